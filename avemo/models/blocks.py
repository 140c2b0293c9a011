"""Building blocks shared by several models."""
from __future__ import annotations

import torch
from torch import nn

from ..ids import EMOTIONS

N_CLASSES = len(EMOTIONS)


def conv_stack_2d(channels, in_channels: int = 1, stem_stride: int = 1) -> tuple[nn.Sequential, int]:
    """Conv-BN-ReLU-maxpool blocks; `stem_stride` 2 makes the first convolution strided, which cuts the
    cost of every later block by 4 (the full-resolution first blocks dominate on a CPU)."""
    layers, previous = [], in_channels
    for i, width in enumerate(channels):
        layers += [nn.Conv2d(previous, width, 3, stride=stem_stride if i == 0 else 1, padding=1, bias=False),
                   nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        previous = width
    return nn.Sequential(*layers), previous


def classifier(latent: int, dropout: float, hidden: int | None = None) -> nn.Sequential:
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(latent, N_CLASSES))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(latent, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, N_CLASSES))


def mean_max_pool(x: torch.Tensor, dims) -> torch.Tensor:
    return torch.cat([x.mean(dim=dims), x.amax(dim=dims)], dim=1)


class Classifier(nn.Module):
    """Base: `encode(batch)` gives a latent vector, `forward` the class logits through `head`."""
    latent_size: int

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        raise NotImplementedError

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encode(batch))
