"""A loaded checkpoint with the preprocessing it was trained with: face crops and audio samples -> the very
inputs the encode stages would have stored (avemo.preprocess, the one per-clip path) -> class probabilities,
for one clip of an unseen person (single_clip) or with a person's enrolment clips (speaker_adapted)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..encoders.registry import Encoder, load_encoder, modality_of
from ..ids import EMOTIONS
from ..modality import FRAMES, joined
from ..normalize import ProtocolNormalizer
from ..preprocess import audio_inputs, face_inputs, strip_round_trip
from ..protocols import SINGLE_CLIP, SPEAKER_ADAPTED

# The faces stage's defaults (params.yaml faces), for models that read no face: 16 frames a window, MTCNN.
DEFAULT_FACES = {"n_frames": 16, "crop_px": 112, "margin": 0.2, "detector": "mtcnn", "detect_size": 480,
                 "min_face": 0.15, "track_step": 4, "track_iou": 0.7, "align": False}


def input_modality(name: str) -> str:
    """video for the face crops ('frames') and the face encoders, audio for the window's encoders."""
    return "video" if name == FRAMES else modality_of(name)


def needs_modality(needs, modality: str) -> bool:
    return any(input_modality(n) == modality for n in needs)


@dataclass
class Predictor:
    """A loaded model (a network's checkpoint or a classical baseline's bundle) with the preprocessing it was
    trained with. `classify(standardised inputs, protocol) -> probabilities` runs the model; `pool` turns
    the encoders' outputs into what it standardises (the baselines' pooled vectors), identity for networks."""
    name: str
    path: Path
    classify: Callable[[dict, str], np.ndarray]
    norm: ProtocolNormalizer
    checkpoint: dict
    prep: dict  # faces (crop settings), audio (sample_rate, offset_s, duration_s), encoders (name -> settings)
    prep_source: str
    needs: tuple[str, ...]
    pool: Callable[[dict], dict] = staticmethod(lambda inputs: inputs)
    # branch ('audio+video' | 'video' | 'audio') -> the inputs it answers from; one branch (its kind) unless
    # the model has several (the release: whatever the file has)
    branches: dict[str, tuple[str, ...]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # the output's model_info (loading.model_info)
    _encoders: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self.branches:
            self.branches = {self.kind: tuple(self.needs)}

    def info_for(self, branch: str) -> dict:
        """model_info with the cross-validated accuracy of the branch that answered, where recorded."""
        accuracy = self.info.get("accuracy") or {}
        by_branch = accuracy.get("by_branch") or {}
        if branch not in by_branch:
            return self.info
        return {**self.info, "accuracy": {**accuracy, **by_branch[branch], "branch": branch}}

    def branch_for(self, video: bool, audio: bool) -> str | None:
        """The branch that answers a file with (a face in) video and/or (audible) audio, or None."""
        wanted = ["audio+video"] if video and audio else []
        wanted += (["video"] if video else []) + (["audio"] if audio else [])
        return next((b for b in wanted if b in self.branches), None)

    @property
    def uses_video(self) -> bool:
        return needs_modality(self.needs, "video")

    @property
    def uses_audio(self) -> bool:
        return needs_modality(self.needs, "audio")

    @property
    def kind(self) -> str:
        return joined(map(input_modality, self.needs))

    @property
    def described(self) -> str:
        return f"{'an' if self.kind.startswith('a') else 'a'} {self.kind} model"

    @property
    def sample_rate(self) -> int:
        """The audio rate of its encoders (16 kHz for a video-only model, when its fallback reads a file)."""
        return (self.prep.get("audio") or {}).get("sample_rate", 16000)

    @property
    def faces(self) -> dict:
        """Its face settings; an audio-only model (which records none) detects faces for --annotate and the
        stream grid with the pipeline's defaults."""
        return self.prep.get("faces") or DEFAULT_FACES

    @property
    def window_s(self) -> float:
        """Stream windows' default length: its audio window, else 3 s (RAVDESS clips are 3-5 s)."""
        return (self.prep.get("audio") or {}).get("duration_s", 3.0)

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.get("classes") or EMOTIONS)

    def encoders(self, modality: str) -> dict[str, Encoder]:
        """The model's encoders of one modality, loaded once, with the settings it was trained with."""
        wanted = [n for n in self.needs if n != FRAMES and modality_of(n) == modality]
        for name in wanted:
            if name not in self._encoders:
                cfg = dict(self.prep["encoders"][name])
                self._encoders[name] = load_encoder(name, cfg, self.sample_rate, cfg.get("logmel"))
        return {name: self._encoders[name] for name in wanted}

    def video_inputs(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """(n, size, size, 3) BGR face crops -> the per-frame inputs this model needs, exactly as the stages
        store them: the crops read back from the faces stage's JPEG strip, each video encoder's output."""
        return face_inputs(strip_round_trip(crops), self.encoders("video"), with_frames=FRAMES in self.needs)

    def audio_inputs(self, samples: np.ndarray, audio_cfg: dict | None = None) -> dict[str, np.ndarray]:
        """A clip's audio samples -> every audio encoder's output this model needs, its windows placed by
        `audio_cfg` (default: the model's own audio settings)."""
        return audio_inputs(samples, audio_cfg or self.prep["audio"], self.encoders("audio"))

    def probabilities(self, inputs: dict[str, np.ndarray], enrolment: dict[str, np.ndarray] | None = None,
                      branch: str | None = None) -> np.ndarray:
        """One clip's inputs (unbatched) -> its class probabilities (calibrated where the model is), from
        `branch`'s inputs (default: the model's first, most complete branch). Without `enrolment` the
        clip is standardised with the training actors' statistics (single_clip); with it (the same inputs
        of k other clips of the person, stacked) with that person's statistics shrunk towards them."""
        branch = branch or next(iter(self.branches))
        needs = self.branches[branch]
        batch = self.pool({k: np.asarray(inputs[k])[None] for k in needs})
        if enrolment:
            normalized = self.norm.with_enrolment(batch, self.pool({k: np.asarray(enrolment[k]) for k in needs}))
        else:
            normalized = self.norm.single_clip(batch)
        return self.classify(normalized, SPEAKER_ADAPTED if enrolment else SINGLE_CLIP, branch)[0]
