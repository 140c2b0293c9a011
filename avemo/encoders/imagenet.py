"""Feature tensors: ImageNet-backbone embeddings of face crops and of log-mel spectrograms."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..backbones import IMAGENET_MEAN, IMAGENET_STD, load_backbone
from .spec import Encoder, EncoderSpec


def bgr_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(n, h, w, 3) uint8 BGR -> ImageNet-normalised (n, 3, h, w) float."""
    rgb = torch.from_numpy(crops[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0
    return (rgb - IMAGENET_MEAN) / IMAGENET_STD


def spectrogram_to_image(logmel: np.ndarray, size: int = 224) -> torch.Tensor:
    """(n, mels, frames) dB -> (n, 3, size, size) image: per-clip min-max to [0,1], ImageNet-normalised."""
    spec = torch.from_numpy(np.asarray(logmel, dtype=np.float32)).unsqueeze(1)
    low = spec.amin(dim=(2, 3), keepdim=True)
    high = spec.amax(dim=(2, 3), keepdim=True)
    spec = (spec - low) / (high - low).clamp_min(1e-6)
    spec = nn.functional.interpolate(spec, size=(size, size), mode="bilinear", align_corners=False)
    return (spec.repeat(1, 3, 1, 1) - IMAGENET_MEAN) / IMAGENET_STD


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    device = next(model.parameters()).device
    out = [model(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def _backbone(name: str, cfg: dict, context) -> tuple[nn.Module, str]:
    with torch.random.fork_rng():  # a random backbone (weights: none) is the same in every process
        torch.manual_seed(0)
        model, _, used = load_backbone(cfg["backbone"], cfg["weights"], f"features.{name}")
    return model.to(context.device), used


def load_faces(cfg: dict, context) -> Encoder:
    model, used = _backbone("video.imagenet", cfg, context)
    return Encoder("imagenet", "video", used, cfg, lambda crops: embed(model, bgr_to_tensor(crops)))


def load_spectrogram(cfg: dict, context) -> Encoder:
    from .signal import load_logmel

    model, used = _backbone("audio.spectrogram", cfg, context)
    logmel = load_logmel(context.logmel or {}, context)
    cfg["logmel"] = dict(context.logmel)
    return Encoder("spectrogram", "audio", used, cfg,
                   lambda window: embed(model, spectrogram_to_image(logmel.encode(window)[None]))[0])


OFFLINE_HINT = "offline: scripts/offline-weights.sh TOOLS_DIR puts MobileNetV2's IMAGENET1K_V1 file in the torch hub cache"
ENCODERS = (
    EncoderSpec("imagenet", "video", ("backbone", "weights"), load_faces, shape=(16, 1280), offline=OFFLINE_HINT,
                random_weights={"weights": "none"}, code=("../backbones.py",),
                pooling="mean"),  # 1280-d already; its standard deviation over frames adds noise, not emotion
    EncoderSpec("spectrogram", "audio", ("backbone", "weights"), load_spectrogram, shape=(1280,),
                offline=OFFLINE_HINT, random_weights={"weights": "none"}, reads="features.audio.logmel",
                code=("signal.py", "../backbones.py")),
)
