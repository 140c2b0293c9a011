"""A loaded checkpoint with the preprocessing it was trained with: face crops and audio samples -> the very
inputs the stages would have stored (features stage's float16, faces stage's JPEG strip) -> probabilities."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..audio import LogMel
from ..errors import StageError
from ..features import bgr_to_tensor, embed, load_backbone, spectrogram_to_image
from ..ids import EMOTIONS
from ..train import Normalizer, predict_proba
from .inputs import strip_round_trip

VIDEO_INPUTS = ("video", "frames")  # frame embeddings, face crops (uint8)
AUDIO_INPUTS = ("logmel", "audio_emb", "wave")  # log-mel, spectrogram embedding, fixed-window waveform


@lru_cache(maxsize=4)
def cached_backbone(name: str, weights: str):
    """load_backbone once per process; seeded as the features stage does, so a random backbone matches."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return load_backbone(name, weights)


@lru_cache(maxsize=4)
def cached_logmel(sample_rate: int, n_mels: int, n_fft: int, hop_ms: float) -> LogMel:
    return LogMel(sample_rate, n_mels, n_fft, hop_ms)


@dataclass
class Predictor:
    """A loaded checkpoint with the preprocessing it was trained with."""
    name: str
    path: Path
    model: torch.nn.Module
    normalizer: Normalizer
    checkpoint: dict
    prep: dict
    prep_source: str
    needs: tuple[str, ...]

    @property
    def uses_video(self) -> bool:
        return any(n in self.needs for n in VIDEO_INPUTS)

    @property
    def uses_audio(self) -> bool:
        return any(n in self.needs for n in AUDIO_INPUTS)

    @property
    def kind(self) -> str:
        return {(True, True): "audio+video", (True, False): "video", (False, True): "audio"}[
            (self.uses_video, self.uses_audio)]

    @property
    def described(self) -> str:
        return f"{'an' if self.kind.startswith('a') else 'a'} {self.kind} model"

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.get("classes") or EMOTIONS)

    def backbone(self) -> torch.nn.Module:
        model, size, _ = cached_backbone(self.prep["features"]["backbone"], str(self.prep["features"]["weights"]))
        for name in ("video", "audio_emb"):
            if name in self.checkpoint["shapes"] and self.checkpoint["shapes"][name][-1] != size:
                raise StageError(f"{self.path}: trained on {name} embeddings of size "
                                 f"{self.checkpoint['shapes'][name][-1]} but {self.prep['features']['backbone']} "
                                 f"gives {size}")
        return model

    def video_inputs(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """(n, size, size, 3) BGR face crops -> the per-frame video inputs this model needs, as the stages
        make them: crops read back from the faces stage's JPEG strip ('frames', uint8) and their
        embeddings stored as float16 ('video', (n, D))."""
        crops = strip_round_trip(crops)
        out = {"frames": crops} if "frames" in self.needs else {}
        if "video" in self.needs:
            out["video"] = embed(self.backbone(), bgr_to_tensor(crops)).astype(np.float16).astype(np.float32)
        return out

    def audio_inputs(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        """Fixed-length samples -> the audio inputs this model needs (waveform, log-mel, spectrogram
        embedding), float16-rounded as the features stage stores them."""
        a, out = self.prep["audio"], {}
        if "wave" in self.needs:
            out["wave"] = samples.astype(np.float16).astype(np.float32)
        if "logmel" in self.needs or "audio_emb" in self.needs:
            logmel = cached_logmel(a["sample_rate"], a["n_mels"], a["n_fft"], a["hop_ms"])(samples)
            logmel = logmel.astype(np.float16).astype(np.float32)
            if "logmel" in self.needs:
                out["logmel"] = logmel
            if "audio_emb" in self.needs:
                emb = embed(self.backbone(), spectrogram_to_image(logmel[None]))[0]
                out["audio_emb"] = emb.astype(np.float16).astype(np.float32)
        return out

    def probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """One clip's inputs (unbatched) -> its class probabilities."""
        arrays = {k: np.asarray(inputs[k]) for k in self.needs}
        batch = SimpleNamespace(inputs={k: (v if v.dtype == np.uint8 else v.astype(np.float32))[None]
                                        for k, v in arrays.items()})
        single = self.checkpoint.get("single_clip_normalizer")
        if single:  # trained with speaker_norm: one clip of an unknown person gets the global statistics
            batch.inputs = {k: t.numpy() for k, t in Normalizer.from_state_dict(single).tensors(batch).items()}
        return predict_proba(self.model, self.normalizer.tensors(batch), torch.device("cpu"))[0]
