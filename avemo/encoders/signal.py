"""Encoders without weights: the log-mel spectrogram (dB) of the audio window, and its samples themselves."""
from __future__ import annotations

import numpy as np

from .spec import Encoder, EncoderSpec


def load_logmel(cfg: dict, context) -> Encoder:
    from ..audio import LogMel
    from ..errors import ParamError

    missing = [k for k in ("n_mels", "n_fft", "hop_ms") if k not in cfg]
    if missing:
        raise ParamError(f"features.audio.logmel: missing {', '.join(missing)}")
    return Encoder("logmel", "audio", "none", cfg,
                   LogMel(context.sample_rate, cfg["n_mels"], cfg["n_fft"], cfg["hop_ms"]))


def load_wave(cfg: dict, context) -> Encoder:
    return Encoder("wave", "audio", "none", cfg, lambda window: np.asarray(window, dtype=np.float32))


ENCODERS = (
    EncoderSpec("logmel", "audio", ("n_mels", "n_fft", "hop_ms"), load_logmel, shape=(64, 301)),
    EncoderSpec("wave", "audio", (), load_wave, shape=(48000,)),
)
