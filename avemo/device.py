"""The device a stage computes on: params.yaml runtime.device (auto: CUDA when present, else the CPU)."""
from __future__ import annotations

import torch

from .io import choice


def pick_device(requested: str = "auto") -> torch.device:
    choice(requested, ("auto", "cpu", "cuda"), "runtime.device")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
