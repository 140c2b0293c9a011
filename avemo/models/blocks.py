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


class ChannelAttention(nn.Sequential):
    """Squeeze-excitation channel attention: a (..., C) summary -> a (..., C) gate in (0, 1). A Sequential
    so that its parameters keep the names `0.weight`, `2.weight` in state dicts."""

    def __init__(self, channels: int, reduction: int = 16):
        hidden = max(1, channels // reduction)
        super().__init__(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid())


def residual_attention(attention: nn.MultiheadAttention, norm: nn.Module, query: torch.Tensor,
                       context: torch.Tensor | None = None) -> torch.Tensor:
    """norm(query + attention(query, context, context)): self-attention when `context` is None."""
    context = query if context is None else context
    return norm(query + attention(query, context, context, need_weights=False)[0])


def chunked(fn, x: torch.Tensor, size: int) -> torch.Tensor:
    """fn over the first axis of `x` in chunks of `size` rows when no gradient is recorded (evaluation of
    many frames or snippets at once); in one call otherwise."""
    if torch.is_grad_enabled() or len(x) <= size:
        return fn(x)
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


def image_feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> the last convolutional (N, C, H', W') map of a torchvision ResNet or MobileNetV2
    (before its global pooling), so that attention can run over positions."""
    if hasattr(model, "layer4"):
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        return model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return model.features(x)


def joined(batch: dict, names) -> torch.Tensor:
    """Several per-frame inputs (B, T, d_i) side by side: (B, T, sum d_i)."""
    return torch.cat([batch[name] for name in names], dim=-1) if len(names) > 1 else batch[names[0]]


def joined_shape(shapes: dict, names) -> tuple[int, int]:
    """(frames, summed feature size) of per-frame inputs that must share their number of frames."""
    frames = {shapes[name][0] for name in names}
    if len(frames) != 1:
        raise ValueError(f"per-frame inputs {list(names)} have different frame counts {sorted(frames)}")
    return frames.pop(), sum(shapes[name][-1] for name in names)


class AttentionPool(nn.Module):
    """Attention pooling over time: a learned score per step, softmax over steps, weighted mean (B, T, d) -> (B, d)."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x).squeeze(-1), dim=1)
        return torch.einsum("bt,btd->bd", weights, x)


POOLINGS = ("mean_std", "mean", "attention")


class SequencePool(nn.Module):
    """(B, T, d) -> (B, d') by `mean_std` (mean and standard deviation over time, d' = 2d), `mean` or
    `attention` (AttentionPool plus the standard deviation, d' = 2d); (B, d) vectors pass through."""

    def __init__(self, dim: int, method: str = "mean_std"):
        super().__init__()
        self.method = method
        self.attention = AttentionPool(dim) if method == "attention" else None
        self.size = dim if method == "mean" else 2 * dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "mean":
            return x.mean(dim=1)
        first = self.attention(x) if self.attention is not None else x.mean(dim=1)
        return torch.cat([first, x.std(dim=1, unbiased=False)], dim=1)
