"""Reading an input file the way the stages do: the file check, the audio track (extract_audio's own rules),
the face crops (crop_faces) and the pipeline's fixed audio window."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import extract_audio, load_wav
from ..errors import StageError, VideoError
from ..faces.clip import FaceTrack, crop_faces

TRUNCATION_TOLERANCE_S = 0.25  # decoded this much shorter than declared: a cut file (RAVDESS clips: < 0.001 s)


@dataclass
class AudioTrack:
    status: str  # ok | no_audio | silent
    samples: np.ndarray | None
    rate: int
    rms_dbfs: float | None = None
    placement: dict | None = None  # where clip mode's window starts, how much of it is padding

    @property
    def seconds(self) -> float | None:
        return None if self.samples is None else len(self.samples) / self.rate

    def problem(self, path) -> str:
        if self.status == "no_audio":
            return f"{path}: has no audio stream"
        return f"{path}: audio is silent (RMS {self.rms_dbfs:.1f} dBFS)" if self.status == "silent" else ""

    def summary(self) -> dict:
        return {"status": self.status, "seconds": None if self.seconds is None else round(self.seconds, 3),
                "rms_dbfs": None if self.rms_dbfs is None else round(self.rms_dbfs, 1), **(self.placement or {})}


def check_input(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: input file not found")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise StageError(f"{path}: not a readable file")
    return path


def read_audio(path: Path, sample_rate: int) -> AudioTrack:
    """The extract_audio stage's own code: ffmpeg decode, no-audio/silence rules, 16-bit WAV read back."""
    with tempfile.TemporaryDirectory(prefix="avemo-audio-") as tmp:
        wav = Path(tmp) / "audio.wav"
        result = extract_audio(path, wav, sample_rate)
        if result.status == "failed":
            raise StageError(result.message)
        samples = load_wav(wav, sample_rate) if result.status == "ok" else None
    return AudioTrack(result.status, samples, sample_rate, result.rms_dbfs)


def read_faces(path: Path, faces_cfg: dict) -> tuple[FaceTrack | None, str]:
    """crop_faces, or None and the reason when the file has no decodable video."""
    try:
        return crop_faces(path, faces_cfg), ""
    except VideoError as err:
        return None, str(err)


def window_start_s(n_samples: int, audio_cfg: dict) -> float:
    """Where the audio window starts: at `offset_s` (the pipeline's place) while at least half of the window
    is sound there, else at 0, so that a short clip's window holds its real sound rather than silence.
    Every RAVDESS clip (3 s and more) keeps `offset_s`: the encode stages' window, byte for byte."""
    rate, duration = audio_cfg["sample_rate"], audio_cfg["duration_s"]
    sound_after_offset = n_samples / rate - audio_cfg["offset_s"]
    return audio_cfg["offset_s"] if sound_after_offset >= duration / 2 else 0.0


def clip_audio(samples: np.ndarray, audio_cfg: dict) -> tuple[dict, dict]:
    """The audio settings with the pipeline's fixed window of `duration_s` placed by window_start_s (the
    per-clip path, avemo.preprocess.audio_inputs, reads the clip's windows by them); and where that window
    starts and how many of its seconds are padding."""
    start = window_start_s(len(samples), audio_cfg)
    sound = min(audio_cfg["duration_s"], max(0.0, len(samples) / audio_cfg["sample_rate"] - start))
    return {**audio_cfg, "offset_s": start}, {"window_start_s": round(start, 3),
                                             "padding_s": round(audio_cfg["duration_s"] - sound, 3)}


def padding_note(path, audio: AudioTrack, placement: dict, audio_cfg: dict) -> str | None:
    """A note for a clip shorter than the audio window: how much of the window is silence."""
    if audio.seconds is None or audio.seconds >= audio_cfg["duration_s"]:
        return None
    return (f"{path}: {audio.seconds:.2f} s of audio is shorter than the model's {audio_cfg['duration_s']:g} s "
            f"window: it starts at {placement['window_start_s']:g} s and {placement['padding_s']:.2f} s of it "
            "is padding (silence), so the audio answer rests on little sound")


def declared_seconds(path: Path) -> float | None:
    """The duration the container declares (its header), None when it declares none."""
    import av

    try:
        with av.open(str(path)) as container:
            return container.duration / 1e6 if container.duration else None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return None


def truncation_note(path: Path, track: FaceTrack | None, audio: AudioTrack | None) -> str | None:
    """A note when less decodes than the file declares (cut or damaged data): decoded against declared."""
    decoded = []
    if track is not None and track.fps > 0 and track.info.get("declared_frames"):
        declared_video = track.info["declared_frames"] / track.fps
        if declared_video - track.info["decoded_frames"] / track.fps > TRUNCATION_TOLERANCE_S:
            decoded.append((f"{track.info['decoded_frames'] / track.fps:.2f} s of video "
                            f"({track.info['decoded_frames']} of {track.info['declared_frames']} frames)",
                            declared_video))
    declared = declared_seconds(path)
    if audio is not None and audio.seconds is not None and declared and \
            declared - audio.seconds > TRUNCATION_TOLERANCE_S:
        decoded.append((f"{audio.seconds:.2f} s of audio", declared))
    if not decoded:
        return None
    longest = max(d for _, d in decoded)
    return (f"{path}: truncated or damaged: only {' and '.join(t for t, _ in decoded)} decode of the "
            f"{longest:.2f} s it declares; predicted from the part that decodes")
