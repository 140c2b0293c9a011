"""Fusion models: concatenation of audio and video latents, and cross-modal attention trained with a
triplet margin loss plus cross-entropy."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Classifier, classifier


class ConcatFusion(Classifier):
    """Audio and video encoders; their latent vectors concatenated -> dense layers."""

    def __init__(self, shapes: dict, audio: dict, video: dict, hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        from . import build_model

        self.audio = build_model(audio["model"], shapes, audio.get("args", {}))
        self.video = build_model(video["model"], shapes, video.get("args", {}))
        self.latent_size = self.audio.latent_size + self.video.latent_size
        self.head = classifier(self.latent_size, dropout, hidden)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        from . import model_inputs

        return tuple(dict.fromkeys(model_inputs(args["audio"]["model"], args["audio"].get("args", {}))
                                   + model_inputs(args["video"]["model"], args["video"].get("args", {}))))

    def encode(self, batch: dict) -> torch.Tensor:
        return torch.cat([self.audio.encode(batch), self.video.encode(batch)], dim=1)


class CrossModalAttentionFusion(Classifier):
    """After Mocanu, Tapu & Zaharia: visual channel and temporal attention over the per-frame features,
    audio temporal attention over the log-mel CNN's time steps, multi-head cross attention in both
    directions (audio queries video, video queries audio), pooled and classified. Trained with
    cross-entropy plus a triplet margin loss on the fused embedding (see avemo.triplets)."""

    def __init__(self, shapes: dict, dim: int = 128, heads: int = 4, dropout: float = 0.3,
                 audio_channels=(32, 64, 128, 128), stem_stride: int = 1, triplet_margin: float = 0.5,
                 triplet_weight: float = 0.5):
        super().__init__()
        from .blocks import conv_stack_2d

        frames, video_dim = shapes["video"]
        self.triplet_margin, self.triplet_weight = triplet_margin, triplet_weight
        self.video_channel = nn.Sequential(nn.Linear(video_dim, video_dim // 16), nn.ReLU(inplace=True),
                                           nn.Linear(video_dim // 16, video_dim), nn.Sigmoid())
        self.video_project = nn.Sequential(nn.Dropout(dropout), nn.Linear(video_dim, dim), nn.ReLU(inplace=True))
        self.video_temporal = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.audio_cnn, width = conv_stack_2d(audio_channels, stem_stride=stem_stride)
        self.audio_project = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, dim), nn.ReLU(inplace=True))
        self.audio_temporal = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.audio_to_video = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.video_to_audio = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.latent_size = 2 * dim
        self.head = classifier(self.latent_size, dropout, dim)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return ("video", "logmel")

    def _video(self, video: torch.Tensor) -> torch.Tensor:
        gated = video * self.video_channel(video.mean(dim=1, keepdim=True))  # channel attention
        x = self.video_project(gated)
        return self.norm(x + self.video_temporal(x, x, x, need_weights=False)[0])  # temporal attention

    def _audio(self, logmel: torch.Tensor) -> torch.Tensor:
        maps = self.audio_cnn(logmel.unsqueeze(1))  # (B, C, mels', frames')
        x = self.audio_project(maps.mean(dim=2).transpose(1, 2))  # time steps (B, frames', dim)
        return self.norm(x + self.audio_temporal(x, x, x, need_weights=False)[0])

    def encode(self, batch: dict) -> torch.Tensor:
        video, audio = self._video(batch["video"]), self._audio(batch["logmel"])
        audio_ctx = self.audio_to_video(audio, video, video, need_weights=False)[0]
        video_ctx = self.video_to_audio(video, audio, audio, need_weights=False)[0]
        return torch.cat([self.norm(audio + audio_ctx).mean(dim=1), self.norm(video + video_ctx).mean(dim=1)], dim=1)

    def triplet_loss(self, anchor: dict, positive: dict, negative: dict) -> torch.Tensor:
        embed = lambda batch: nn.functional.normalize(self.encode(batch), dim=1)  # noqa: E731
        return nn.functional.triplet_margin_loss(embed(anchor), embed(positive), embed(negative),
                                                 margin=self.triplet_margin)
