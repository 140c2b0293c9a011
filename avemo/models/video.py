"""Video models: sequence models over per-frame embeddings, per-frame voting, and 3D CNNs over face crops."""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from ..aggregate import AGGREGATIONS
from ..io import choice
from .blocks import N_CLASSES, Classifier, classifier

KINETICS_MEAN = torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1)
KINETICS_STD = torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1)


class FrameSequence(Classifier):
    """Per-frame embeddings (frames x D) -> projection -> LSTM or Transformer encoder -> mean over time."""

    def __init__(self, shapes: dict, temporal: str = "lstm", hidden: int = 128, layers: int = 1,
                 heads: int = 4, dropout: float = 0.3, bidirectional: bool = True):
        super().__init__()
        frames, dim = shapes["video"]
        self.temporal = choice(temporal, ("lstm", "transformer"), "args.temporal")
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, hidden), nn.ReLU(inplace=True))
        if temporal == "lstm":
            self.sequence = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
            self.latent_size = hidden * (2 if bidirectional else 1)
        else:
            self.position = nn.Parameter(torch.zeros(1, frames, hidden))
            block = nn.TransformerEncoderLayer(hidden, heads, hidden * 2, dropout, batch_first=True)
            self.sequence = nn.TransformerEncoder(block, layers)
            self.latent_size = hidden
        self.head = classifier(self.latent_size, dropout)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return ("video",)

    def sequence_features(self, batch: dict) -> torch.Tensor:
        x = self.project(batch["video"])
        if self.temporal == "lstm":
            return self.sequence(x)[0]
        return self.sequence(x + self.position[:, :x.shape[1]])

    def encode(self, batch: dict) -> torch.Tensor:
        return self.sequence_features(batch).mean(dim=1)


class FrameVoting(Classifier):
    """Per-frame classifier on frame embeddings (the backbone is features.backbone), trained on every
    frame with the clip's label; the clip decision aggregates frames by probability sum or majority
    vote with the probability sum breaking ties."""

    def __init__(self, shapes: dict, hidden: int = 256, dropout: float = 0.5, aggregation: str = "vote"):
        super().__init__()
        self.aggregation = choice(aggregation, AGGREGATIONS, "args.aggregation")
        self.frame_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(shapes["video"][-1], hidden),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, N_CLASSES))
        self.latent_size = N_CLASSES

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return ("video",)

    def frame_logits(self, batch: dict) -> torch.Tensor:
        return self.frame_head(batch["video"])  # (B, T, classes)

    def loss(self, batch: dict, labels: torch.Tensor, loss_fn) -> torch.Tensor:
        logits = self.frame_logits(batch)
        return loss_fn(logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]))

    def forward(self, batch: dict) -> torch.Tensor:
        probs = torch.softmax(self.frame_logits(batch), dim=-1)
        total = probs.sum(dim=1)
        if self.aggregation == "sum":
            return torch.log(total / total.sum(dim=1, keepdim=True))
        votes = nn.functional.one_hot(probs.argmax(dim=-1), N_CLASSES).sum(dim=1).float()
        score = votes + total / (total.sum(dim=1, keepdim=True) + 1.0)
        return torch.log(score / score.sum(dim=1, keepdim=True))


def frames_to_clip(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 BGR face crops -> (B, 3, T, H, W) Kinetics-normalised floats."""
    clip = frames.flip(-1).permute(0, 4, 1, 2, 3).float() / 255.0
    return (clip - KINETICS_MEAN.to(clip.device)) / KINETICS_STD.to(clip.device)


class Plain3DCNN(nn.Module):
    """3D conv + batch norm + pooling blocks, dense head (the plain 3D CNN design: 20 frames at 112x112)."""

    def __init__(self, channels=(32, 64, 128, 256), dropout: float = 0.5):
        super().__init__()
        layers, previous = [], 3
        for i, width in enumerate(channels):
            layers += [nn.Conv3d(previous, width, 3, padding=1, bias=False), nn.BatchNorm3d(width),
                       nn.ReLU(inplace=True), nn.MaxPool3d((1, 2, 2) if i == 0 else 2, ceil_mode=True)]
            previous = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.out_features = previous

    def forward(self, x):
        return self.features(x)


VIDEO_BACKBONES = ("plain3d", "r3d_18", "mvit_v2_s")


class Video3D(Classifier):
    """Clip classifiers over the stacked face crops: plain 3D CNN, torchvision r3d_18 (3D ResNet-18) or
    mvit_v2_s (MViTv2-S; frames resized to its 16 x 224 x 224 input). Kinetics weights through the
    torchvision weights API when `weights` names them (e.g. KINETICS400_V1), random otherwise."""

    def __init__(self, shapes: dict, backbone: str = "plain3d", weights: str | None = None,
                 dropout: float = 0.5, channels=(32, 64, 128, 256)):
        super().__init__()
        self.backbone_name = choice(backbone, VIDEO_BACKBONES, "args.backbone")
        if backbone == "plain3d":
            self.backbone = Plain3DCNN(channels, dropout)
            self.latent_size = self.backbone.out_features
        else:
            self.backbone = torchvision.models.get_model(backbone, weights=weights)
            head = self.backbone.fc if backbone == "r3d_18" else self.backbone.head[-1]
            self.latent_size = head.in_features
            if backbone == "r3d_18":
                self.backbone.fc = nn.Identity()
            else:
                self.backbone.head[-1] = nn.Identity()
        self.head = classifier(self.latent_size, dropout)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return ("frames",)

    def encode(self, batch: dict) -> torch.Tensor:
        clip = frames_to_clip(batch["frames"])
        if self.backbone_name == "mvit_v2_s":
            index = torch.linspace(0, clip.shape[2] - 1, 16, device=clip.device).round().long()
            clip = nn.functional.interpolate(clip[:, :, index], size=(16, 224, 224), mode="trilinear",
                                             align_corners=False)
        return self.backbone(clip)
