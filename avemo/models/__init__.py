"""Models by architecture name. Each takes a dict of input tensors and returns class logits; `encode`
gives the latent vector that fusion models combine. Inputs (avemo/encoders/registry.py): per-frame face features
'imagenet' (frames x D) and 'fer' (frames x 135), 'frames' (frames x H x W x 3 uint8 face crops),
'logmel' (mels x steps), 'wave' (samples), 'spectrogram' (D, the ImageNet embedding of the log-mel
image), and speech encoder states 'whisper', 'wav2vec2', 'hubert', 'wavlm' (steps x D)."""
from __future__ import annotations

from . import audio, fusion, late, video  # noqa: F401  (each registers its architectures)
from .blocks import N_CLASSES
from .registry import ARCHITECTURES, build_model, model_inputs

__all__ = ["ARCHITECTURES", "N_CLASSES", "build_model", "model_inputs"]
