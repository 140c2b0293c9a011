"""Models by name. Each takes a dict of input tensors and returns class logits; `encode` gives the
latent vector that fusion models concatenate."""
from __future__ import annotations

import torch
from torch import nn

from .ids import EMOTIONS
from .io import choice

N_CLASSES = len(EMOTIONS)


class LogMelCNN(nn.Module):
    """2D CNN over a log-mel spectrogram (1 x mels x frames)."""
    inputs = ("logmel",)

    def __init__(self, shapes: dict, channels=(32, 64, 128, 128), latent: int = 128, dropout: float = 0.3):
        super().__init__()
        layers, previous = [], 1
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(previous * 2, latent), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(latent, N_CLASSES))
        self.latent_size = latent

    def encode(self, batch: dict) -> torch.Tensor:
        x = self.features(batch["logmel"].unsqueeze(1))
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.project(pooled)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encode(batch))


class FrameSequenceModel(nn.Module):
    """Per-frame embeddings (frames x D) -> projection -> LSTM or Transformer encoder -> pooled latent."""
    inputs = ("video",)

    def __init__(self, shapes: dict, temporal: str = "lstm", hidden: int = 128, layers: int = 1,
                 heads: int = 4, dropout: float = 0.3, bidirectional: bool = True):
        super().__init__()
        frames, dim = shapes["video"]
        self.temporal = choice(temporal, ("lstm", "transformer"), "model temporal")
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, hidden), nn.ReLU(inplace=True))
        if temporal == "lstm":
            self.sequence = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True,
                                    bidirectional=bidirectional)
            self.latent_size = hidden * (2 if bidirectional else 1)
        else:
            self.position = nn.Parameter(torch.zeros(1, frames, hidden))
            block = nn.TransformerEncoderLayer(hidden, heads, hidden * 2, dropout, batch_first=True)
            self.sequence = nn.TransformerEncoder(block, layers)
            self.latent_size = hidden
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.latent_size, N_CLASSES))

    def encode(self, batch: dict) -> torch.Tensor:
        x = self.project(batch["video"])
        if self.temporal == "lstm":
            return self.sequence(x)[0].mean(dim=1)
        return self.sequence(x + self.position[:, :x.shape[1]]).mean(dim=1)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encode(batch))


class EmbeddingMLP(nn.Module):
    """MLP over one pooled embedding vector (e.g. the ImageNet-backbone embedding of a spectrogram)."""

    def __init__(self, shapes: dict, input_name: str = "audio_emb", hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.inputs = (input_name,)
        self.input_name = input_name
        self.encoder = nn.Sequential(nn.Dropout(dropout), nn.Linear(shapes[input_name][-1], hidden),
                                     nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, N_CLASSES))
        self.latent_size = hidden

    def encode(self, batch: dict) -> torch.Tensor:
        return self.encoder(batch[self.input_name])

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encode(batch))


class ConcatFusion(nn.Module):
    """Audio and video encoders; their latent vectors concatenated -> dense layers."""

    def __init__(self, shapes: dict, audio: dict, video: dict, hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        self.audio = build_model(audio["model"], shapes, audio.get("args", {}))
        self.video = build_model(video["model"], shapes, video.get("args", {}))
        self.inputs = tuple(dict.fromkeys(self.audio.inputs + self.video.inputs))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.audio.latent_size + self.video.latent_size,
                                                                 hidden),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, N_CLASSES))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(torch.cat([self.audio.encode(batch), self.video.encode(batch)], dim=1))


ARCHITECTURES = {
    "logmel_cnn": LogMelCNN,
    "frame_sequence": FrameSequenceModel,
    "embedding_mlp": EmbeddingMLP,
    "concat_fusion": ConcatFusion,
}


def build_model(architecture: str, shapes: dict, args: dict) -> nn.Module:
    choice(architecture, ARCHITECTURES, "architecture")
    return ARCHITECTURES[architecture](shapes, **args)


def model_inputs(architecture: str, args: dict) -> tuple[str, ...]:
    """Input names a model needs, known before any data is loaded."""
    if architecture == "concat_fusion":
        return tuple(dict.fromkeys(model_inputs(args["audio"]["model"], args["audio"].get("args", {}))
                                   + model_inputs(args["video"]["model"], args["video"].get("args", {}))))
    if architecture == "embedding_mlp":
        return (args.get("input_name", "audio_emb"),)
    return ARCHITECTURES[architecture].inputs
