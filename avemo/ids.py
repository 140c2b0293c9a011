"""RAVDESS file identifiers: `MM-VV-EE-II-SS-RR-AA` (modality, vocal channel, emotion,
intensity, statement, repetition, actor)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from .errors import BadClipName

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
VOCAL_CHANNELS = {1: "speech", 2: "song"}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
N_ACTORS = 24

_ID = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


@dataclass(frozen=True)
class ClipId:
    modality: int
    vocal_channel: int
    emotion: int  # 1..8, as in the file name
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def stem(self) -> str:
        return "-".join(f"{v:02d}" for v in asdict(self).values())

    @property
    def label(self) -> int:
        """Zero-based class index into EMOTIONS."""
        return self.emotion - 1

    @property
    def gender(self) -> str:
        return "male" if self.actor % 2 else "female"

    def as_row(self) -> dict:
        return {
            "clip_id": self.stem,
            "modality": MODALITIES[self.modality],
            "vocal_channel": VOCAL_CHANNELS[self.vocal_channel],
            "emotion": EMOTIONS[self.label],
            "label": self.label,
            "intensity": INTENSITIES[self.intensity],
            "statement": self.statement,
            "repetition": self.repetition,
            "actor": self.actor,
            "gender": self.gender,
        }


def _check(name: str, field: str, value: int, valid) -> None:
    if value not in valid:
        raise BadClipName(f"{name}: {field} {value:02d} is outside the RAVDESS scheme "
                          f"(valid: {', '.join(f'{v:02d}' for v in valid)})")


def parse_clip_id(path: str | Path) -> ClipId:
    """Parse a RAVDESS name such as `01-01-03-02-01-01-12.mp4`; raise BadClipName naming the file."""
    name = Path(path).name
    match = _ID.match(Path(name).stem)
    if not match:
        raise BadClipName(f"{name}: not a RAVDESS name (expected MM-VV-EE-II-SS-RR-AA, seven two-digit fields)")
    clip = ClipId(*map(int, match.groups()))
    _check(name, "modality", clip.modality, MODALITIES)
    _check(name, "vocal channel", clip.vocal_channel, VOCAL_CHANNELS)
    _check(name, "emotion", clip.emotion, range(1, 9))
    _check(name, "intensity", clip.intensity, INTENSITIES)
    _check(name, "statement", clip.statement, STATEMENTS)
    _check(name, "repetition", clip.repetition, (1, 2))
    _check(name, "actor", clip.actor, range(1, N_ACTORS + 1))
    if clip.emotion == 1 and clip.intensity == 2:
        raise BadClipName(f"{name}: neutral has no strong intensity in RAVDESS")
    return clip
