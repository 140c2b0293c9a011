"""What an encoder module declares: `ENCODERS = (EncoderSpec(...), ...)`, each spec naming the encoder, its
modality, its settings, its loader and what it gives (avemo/encoders/registry.py finds them; docs/encoders.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ParamError

MODALITIES = ("video", "audio")
POOLINGS = ("mean_std", "mean", "flatten", "per_layer")


@dataclass
class Encoder:
    name: str
    modality: str  # video (per face crop) or audio (the window)
    weights: str   # recorded in every metric that uses it
    config: dict   # the settings its output depends on
    encode: Callable[[np.ndarray], np.ndarray]  # one clip: crops (n, s, s, 3) uint8 BGR, or window (samples,)


@dataclass(frozen=True)
class LoadContext:
    """What a loader may need besides the encoder's own settings."""
    sample_rate: int = 16000
    logmel: dict | None = None  # params.yaml features.audio.logmel (the spectrogram embedding reads it)
    device: str = "cpu"


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    modality: str  # video or audio
    keys: tuple[str, ...]  # its settings, params.yaml features.<modality>.<name>: all required
    load: Callable[[dict, LoadContext], Encoder]  # settings (checked for `keys`) -> the loaded encoder
    shape: tuple[int, ...]  # one clip's output with params.yaml's settings (16 face crops, a 3 s window)
    offline: str = ""  # how its weights get onto a machine without internet ("" = it needs none)
    random_weights: dict | None = None  # settings that build it with random weights (None: no such option)
    pooling: str | None = None  # for the classical baselines: mean_std or mean over frames / steps, or
    # flatten (already pooled per clip: the values as one vector), per_layer (mean_std over T of each
    # layer of (layers, T, d), or (layers, 2d) as it is); None: no baseline input
    reads: str | None = None  # another params.yaml key its output depends on (the spectrogram: the log-mel's)
    code: tuple[str, ...] = ()  # files besides its module (relative to avemo/encoders) its output depends on
    module: str = field(default="", compare=False)  # its module's file name, filled in by the registry

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ParamError(f"encoder '{self.name}': modality {self.modality!r}; give one of {', '.join(MODALITIES)}")
        if self.pooling not in (None, *POOLINGS):
            raise ParamError(f"encoder '{self.name}': pooling {self.pooling!r}; give one of {', '.join(POOLINGS)} or None")

    @property
    def param(self) -> str:
        return f"features.{self.modality}.{self.name}"
