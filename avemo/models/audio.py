"""Audio models: log-mel and MFCC 2D CNNs, a 1D CNN on the raw waveform, an MLP (or linear classifier) on
pooled embeddings (spectrogram images, Whisper and other encoders)."""
from __future__ import annotations

import torch
from torch import nn

from ..io import choice
from .blocks import (
    POOLINGS,
    Classifier,
    SequencePool,
    classifier,
    conv_stack_2d,
    mean_max_pool,
)
from .registry import register


@register("logmel_cnn", "spectrogram_cnn")
class SpectrogramCNN(Classifier):
    """2D CNN over a (mels x frames) log-mel spectrogram, or over MFCCs computed from the waveform."""

    def __init__(self, shapes: dict, channels=(32, 64, 128, 128), latent: int = 128, dropout: float = 0.3,
                 source: str = "logmel", n_mfcc: int = 40, sample_rate: int = 16000, stem_stride: int = 1):
        super().__init__()
        self.source = source
        if source == "mfcc":
            import torchaudio  # here: only MFCC models need it

            self.mfcc = torchaudio.transforms.MFCC(sample_rate, n_mfcc, melkwargs={
                "n_fft": 512, "hop_length": sample_rate // 100, "n_mels": 64})
            self.mfcc_norm = nn.BatchNorm2d(1)
        self.features, width = conv_stack_2d(channels, stem_stride=stem_stride)
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(width * 2, latent), nn.ReLU(inplace=True))
        self.head = classifier(latent, dropout)
        self.latent_size = latent

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return ("wave",) if args.get("source") == "mfcc" else ("logmel",)

    def spectrogram(self, batch: dict) -> torch.Tensor:
        if self.source == "mfcc":
            return self.mfcc_norm(self.mfcc(batch["wave"]).unsqueeze(1))
        return batch["logmel"].unsqueeze(1)

    def encode(self, batch: dict) -> torch.Tensor:
        return self.project(mean_max_pool(self.features(self.spectrogram(batch)), (2, 3)))


@register("wave_cnn")
class WaveCNN(Classifier):
    """1D CNN on the raw waveform. Trains on random windows of `context_s` seconds; at evaluation the
    logits of windows spread over the whole clip are averaged (the original design compared short and
    long contexts)."""

    def __init__(self, shapes: dict, context_s: float = 1.0, sample_rate: int = 16000,
                 channels=(32, 64, 128, 128, 128), latent: int = 128, dropout: float = 0.3):
        super().__init__()
        self.context = int(context_s * sample_rate)
        layers, previous = [nn.Conv1d(1, channels[0], 80, stride=4, padding=38, bias=False),
                            nn.BatchNorm1d(channels[0]), nn.ReLU(inplace=True), nn.MaxPool1d(4)], channels[0]
        for width in channels[1:]:
            layers += [nn.Conv1d(previous, width, 3, padding=1, bias=False), nn.BatchNorm1d(width),
                       nn.ReLU(inplace=True), nn.MaxPool1d(4 if width == channels[1] else 2)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(previous * 2, latent), nn.ReLU(inplace=True))
        self.head = classifier(latent, dropout)
        self.latent_size = latent

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return ("wave",)

    def windows(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, W, context): one random window in training, evenly spaced windows otherwise."""
        length = wave.shape[1]
        if self.context >= length:
            return wave.unsqueeze(1)
        if self.training:
            start = int(torch.randint(0, length - self.context + 1, (1,)))
            return wave[:, start:start + self.context].unsqueeze(1)
        return wave.unfold(1, self.context, max(1, self.context // 2))

    def encode(self, batch: dict) -> torch.Tensor:
        windows = self.windows(batch["wave"])
        b, w, length = windows.shape
        latent = self.project(mean_max_pool(self.features(windows.reshape(b * w, 1, length)), (2,)))
        return latent.reshape(b, w, -1).mean(dim=1)


@register("embedding_mlp")
class EmbeddingMLP(Classifier):
    """MLP (or, with `hidden: 0`, a linear classifier: multinomial logistic regression) over pooled
    inputs side by side: vectors as they are (e.g. the ImageNet embedding of a spectrogram image), and
    sequences pooled over time by `pool` (mean_std, mean or attention; e.g. Whisper encoder states, or
    per-frame FER2013 / ImageNet face features)."""

    def __init__(self, shapes: dict, inputs=("spectrogram",), pool: str = "mean_std", hidden: int = 256,
                 dropout: float = 0.5):
        super().__init__()
        self.inputs = tuple(inputs)
        choice(pool, POOLINGS, "args.pool")
        self.pools = nn.ModuleDict({name: SequencePool(shapes[name][-1], pool) for name in self.inputs
                                    if len(shapes[name]) == 2})
        size = sum(self.pools[name].size if name in self.pools else shapes[name][-1] for name in self.inputs)
        if hidden:
            self.encoder = nn.Sequential(nn.Dropout(dropout), nn.Linear(size, hidden), nn.ReLU(inplace=True))
            self.latent_size = hidden
        else:
            self.encoder, self.latent_size = nn.Identity(), size
        self.head = classifier(self.latent_size, dropout)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return tuple(args.get("inputs", ("spectrogram",)))

    def encode(self, batch: dict) -> torch.Tensor:
        parts = [self.pools[name](batch[name]) if name in self.pools else batch[name] for name in self.inputs]
        return self.encoder(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
