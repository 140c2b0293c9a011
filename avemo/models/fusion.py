"""Fusion models: concatenation of audio and video latents, cross-modal attention trained with a
triplet margin loss plus cross-entropy (over frame embeddings, or end to end over face-crop snippets),
and a per-frame audio-visual sequence model."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ParamError
from ..io import choice
from .blocks import (
    ChannelAttention,
    Classifier,
    chunked,
    classifier,
    image_feature_map,
    joined,
    joined_shape,
    residual_attention,
)
from .registry import build_model, model_inputs, register


@register("concat_fusion")
class ConcatFusion(Classifier):
    """Audio and video encoders; their latent vectors concatenated -> dense layers."""

    def __init__(self, shapes: dict, audio: dict, video: dict, hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        self.audio = build_model(audio["model"], shapes, audio.get("args", {}))
        self.video = build_model(video["model"], shapes, video.get("args", {}))
        self.latent_size = self.audio.latent_size + self.video.latent_size
        self.head = classifier(self.latent_size, dropout, hidden)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return tuple(dict.fromkeys(model_inputs(args["audio"]["model"], args["audio"].get("args", {}))
                                   + model_inputs(args["video"]["model"], args["video"].get("args", {}))))

    def encode(self, batch: dict) -> torch.Tensor:
        return torch.cat([self.audio.encode(batch), self.video.encode(batch)], dim=1)


class CrossModalFusionMixin:
    """What the cross-modal attention models share: multi-head cross attention in both directions (audio
    queries video, video queries audio), each with a residual and layer norm, mean over time, the two
    concatenated; and the triplet margin loss on that fused embedding, which the Trainer adds with
    weight `triplet_weight` on (anchor, positive, negative) training clips (avemo.triplets). Needs the
    attributes audio_to_video, video_to_audio, norm, triplet_margin, made by `build_audio_and_fusion`."""

    def build_audio_and_fusion(self, audio_width: int, dim: int, heads: int, dropout: float) -> None:
        """The layers after the audio encoder, in this order (the seeded initialisation depends on it):
        audio projection and temporal attention, cross attention both ways, norm, classifier head."""
        self.audio_project = nn.Sequential(nn.Dropout(dropout), nn.Linear(audio_width, dim), nn.ReLU(inplace=True))
        self.audio_temporal = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.audio_to_video = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.video_to_audio = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.latent_size = 2 * dim
        self.head = classifier(self.latent_size, dropout, dim)

    def fuse(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        audio_ctx = residual_attention(self.audio_to_video, self.norm, audio, video)
        video_ctx = residual_attention(self.video_to_audio, self.norm, video, audio)
        return torch.cat([audio_ctx.mean(dim=1), video_ctx.mean(dim=1)], dim=1)

    def triplet_loss(self, anchor: dict, positive: dict, negative: dict) -> torch.Tensor:
        embed = lambda batch: nn.functional.normalize(self.encode(batch), dim=1)  # noqa: E731
        return nn.functional.triplet_margin_loss(embed(anchor), embed(positive), embed(negative),
                                                 margin=self.triplet_margin)


@register("cross_attention_fusion")
class CrossModalAttentionFusion(CrossModalFusionMixin, Classifier):
    """After Mocanu, Tapu & Zaharia: visual channel and temporal attention over the per-frame features,
    audio temporal attention over the log-mel CNN's time steps, multi-head cross attention in both
    directions (audio queries video, video queries audio), pooled and classified. Trained with
    cross-entropy plus a triplet margin loss on the fused embedding (see avemo.triplets)."""

    def __init__(self, shapes: dict, dim: int = 128, heads: int = 4, dropout: float = 0.3,
                 audio_channels=(32, 64, 128, 128), stem_stride: int = 1, triplet_margin: float = 0.5,
                 triplet_weight: float = 0.5, video_inputs=("imagenet",)):
        super().__init__()
        from .blocks import conv_stack_2d

        self.video_inputs = tuple(video_inputs)
        frames, video_dim = joined_shape(shapes, self.video_inputs)
        self.triplet_margin, self.triplet_weight = triplet_margin, triplet_weight
        self.video_channel = ChannelAttention(video_dim)
        self.video_project = nn.Sequential(nn.Dropout(dropout), nn.Linear(video_dim, dim), nn.ReLU(inplace=True))
        self.video_temporal = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.audio_cnn, width = conv_stack_2d(audio_channels, stem_stride=stem_stride)
        self.build_audio_and_fusion(width, dim, heads, dropout)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return tuple(args.get("video_inputs", ("imagenet",))) + ("logmel",)

    def _video(self, video: torch.Tensor) -> torch.Tensor:
        gated = video * self.video_channel(video.mean(dim=1, keepdim=True))  # channel attention
        return residual_attention(self.video_temporal, self.norm, self.video_project(gated))  # temporal attention

    def _audio(self, logmel: torch.Tensor) -> torch.Tensor:
        maps = self.audio_cnn(logmel.unsqueeze(1))  # (B, C, mels', frames')
        x = self.audio_project(maps.mean(dim=2).transpose(1, 2))  # time steps (B, frames', dim)
        return residual_attention(self.audio_temporal, self.norm, x)

    def encode(self, batch: dict) -> torch.Tensor:
        video = self._video(joined(batch, self.video_inputs))  # video first: the order of dropout draws of earlier runs
        return self.fuse(self._audio(batch["logmel"]), video)


@register("snippet_cross_attention")
class SnippetCrossAttention(CrossModalFusionMixin, Classifier):
    """Mocanu, Tapu & Zaharia's cross-modal attention fusion end to end over the face crops ('frames')
    and the log-mel.

    Video: the clip as S snippets of L frames (snippet_indices: the S*L positions spread evenly over the
    clip's face crops, repeating frames when the faces stage kept fewer than S*L), each snippet through a
    3D ResNet (`depth` 101 in the design, Kinetics weights from `weights_path` when given; 18 for CPU
    smoke runs) to its last feature map, averaged over its remaining time steps; channel attention
    (squeeze-excitation gate from the globally pooled map), spatial attention (softmax over the map's
    H' x W' positions, a weighted sum), then temporal multi-head self-attention over the S snippet
    vectors (with learned snippet positions). Audio: a torchvision ResNet-18 (`audio.weights`: ImageNet
    through torchvision, or null) over the log-mel repeated to 3 channels, its last map averaged over
    frequency gives the time steps, temporal multi-head self-attention. Then cross attention both ways,
    classifier; cross-entropy plus the triplet margin loss in training (CrossModalFusionMixin),
    single clips in evaluation. `checkpoint`: activation checkpointing of the 3D ResNet's blocks, which
    the full design needs on an 80 GB GPU at batch size 8 (each step runs anchors, positives and negatives:
    3 x 8 clips x 6 snippets of 16 frames through the 3D ResNet-101)."""

    def __init__(self, shapes: dict, depth: int = 101, weights_path: str | None = None, snippets: int = 6,
                 snippet_frames: int = 16, audio: dict | None = None, dim: int = 256, heads: int = 4,
                 dropout: float = 0.3, reduction: int = 16, triplet_margin: float = 0.5, triplet_weight: float = 0.5,
                 checkpoint: bool = False, chunk: int = 32):
        super().__init__()
        from ..backbones import load_backbone
        from .video import snippet_indices, video_resnet

        audio = {"backbone": "resnet18", "weights": None, **(audio or {})}
        self.triplet_margin, self.triplet_weight = triplet_margin, triplet_weight
        self.checkpoint, self.chunk = checkpoint, chunk  # activation checkpointing in training, eval chunk size
        self.register_buffer("snippet_index", snippet_indices(shapes["frames"][0], snippets, snippet_frames),
                             persistent=False)
        self.video_cnn = video_resnet(depth, weights_path)
        width = self.video_cnn.out_features
        self.video_channel = ChannelAttention(width, reduction)
        self.video_spatial = nn.Conv2d(width, 1, 1)
        self.video_project = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, dim), nn.ReLU(inplace=True))
        self.snippet_position = nn.Parameter(torch.zeros(1, snippets, dim))
        self.video_temporal = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.audio_cnn, audio_width, self.audio_weights = load_backbone(audio["backbone"], audio["weights"],
                                                                        param="args.audio")
        self.build_audio_and_fusion(audio_width, dim, heads, dropout)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return ("frames", "logmel")

    def _snippet_vectors(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, L, H, W) snippets -> (N, C) after channel and spatial attention."""
        from .video import video_feature_map

        maps = video_feature_map(self.video_cnn, clips, self.checkpoint).mean(dim=2)  # (N, C, H', W')
        maps = maps * self.video_channel(maps.mean(dim=(2, 3)))[:, :, None, None]  # channel attention
        weights = torch.softmax(self.video_spatial(maps).flatten(1), dim=1)  # spatial attention over H' x W'
        return (maps.flatten(2) * weights[:, None]).sum(dim=2)

    def _video(self, frames: torch.Tensor) -> torch.Tensor:
        from .video import frames_to_clip

        clip = frames_to_clip(frames)  # (B, 3, T, H, W)
        snippets = clip[:, :, self.snippet_index]  # (B, 3, S, L, H, W)
        b, s = snippets.shape[0], snippets.shape[2]
        vectors = chunked(self._snippet_vectors, snippets.transpose(1, 2).flatten(0, 1), self.chunk)
        x = self.video_project(vectors).reshape(b, s, -1) + self.snippet_position
        return residual_attention(self.video_temporal, self.norm, x)  # temporal attention over snippets

    def _audio(self, logmel: torch.Tensor) -> torch.Tensor:
        maps = image_feature_map(self.audio_cnn, logmel.unsqueeze(1).expand(-1, 3, -1, -1))  # (B, C, mels', T')
        x = self.audio_project(maps.mean(dim=2).transpose(1, 2))  # time steps (B, T', dim)
        return residual_attention(self.audio_temporal, self.norm, x)

    def encode(self, batch: dict) -> torch.Tensor:
        return self.fuse(self._audio(batch["logmel"]), self._video(batch["frames"]))


def frame_slice_weights(n_frames: int, steps: int, clip_s: float, offset_s: float, duration_s: float) -> torch.Tensor:
    """(n_frames, steps) 0/1 matrix: which log-mel columns each face frame hears.

    The faces stage samples frame i at the centre of the i-th of n equal segments of the clip
    (avemo.faces.sampling.sample_indices): time t_i = (i + 0.5) * clip_s / n. Log-mel column j is centred at
    offset_s + j * duration_s / (steps - 1) (the features stage's window; centred STFT). Frame i hears
    the columns inside its own segment [t_i - clip_s / 2n, t_i + clip_s / 2n); segments outside the
    window hear nothing (an all-zero row)."""
    frame = torch.arange(n_frames, dtype=torch.float64)
    start, end = frame * clip_s / n_frames, (frame + 1) * clip_s / n_frames
    column = offset_s + torch.arange(steps, dtype=torch.float64) * duration_s / max(1, steps - 1)
    return ((column[None] >= start[:, None]) & (column[None] < end[:, None])).float()


@register("av_frame_lstm")
class AVFrameLSTM(Classifier):
    """Per-frame audio-visual model: each face frame's features (`video_inputs`, ImageNet embeddings by default) is paired
    with the log-mel slice heard around that frame; (bi)LSTM over the frames, mean, classifier.

    Audio per frame: a small 1D CNN over the whole log-mel (mel bands as channels, time resolution
    kept), then mean and max over the frame's columns (frame_slice_weights); a frame whose segment lies
    outside the log-mel window gets a learned 'no audio' vector instead. Alignment: frame times follow
    the faces stage's sampling for a clip of `clip_s` seconds and the window is (`audio_offset_s`,
    `audio_duration_s`), which must equal params audio.offset_s / audio.duration_s (a test checks).
    Clip lengths (RAVDESS speech: 3.0-4.8 s) are not among the model's inputs, so `clip_s` is the
    typical length: on the sample clips the slices sit 0.13 s from the frames' true times on average
    (0.27 s when the window is cut into n equal slices), one frame interval being ~0.24 s. With the
    default window (0.5-3.5 s) and 16 frames the first two hear nothing, the last the window's final 30 ms."""

    def __init__(self, shapes: dict, clip_s: float = 3.7, audio_offset_s: float = 0.5, audio_duration_s: float = 3.0,
                 audio_channels: int = 64, frame_hidden: int = 128, hidden: int = 128, temporal: str = "bilstm",
                 dropout: float = 0.5, video_inputs=("imagenet",)):
        super().__init__()
        self.video_inputs = tuple(video_inputs)
        n_frames, video_dim = joined_shape(shapes, self.video_inputs)
        mels, steps = shapes["logmel"]
        self.temporal = choice(temporal, ("lstm", "bilstm"), "args.temporal")
        weights = frame_slice_weights(n_frames, steps, clip_s, audio_offset_s, audio_duration_s)
        if not weights.any():
            raise ParamError(f"args: no frame of a {clip_s} s clip falls in the log-mel window "
                             f"{audio_offset_s}-{audio_offset_s + audio_duration_s} s")
        self.register_buffer("slice_mask", weights.bool(), persistent=False)
        self.audio_cnn = nn.Sequential(
            nn.Conv1d(mels, audio_channels, 5, padding=2, bias=False), nn.BatchNorm1d(audio_channels), nn.ReLU(inplace=True),
            nn.Conv1d(audio_channels, audio_channels, 3, padding=1, bias=False), nn.BatchNorm1d(audio_channels),
            nn.ReLU(inplace=True))
        self.no_audio = nn.Parameter(torch.zeros(2 * audio_channels))
        self.video_project = nn.Sequential(nn.Dropout(dropout), nn.Linear(video_dim, frame_hidden), nn.ReLU(inplace=True))
        bidirectional = temporal == "bilstm"
        self.dropout = nn.Dropout(dropout)
        self.sequence = nn.LSTM(frame_hidden + 2 * audio_channels, hidden, batch_first=True, bidirectional=bidirectional)
        self.latent_size = hidden * (2 if bidirectional else 1)
        self.head = classifier(self.latent_size, dropout)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return tuple(args.get("video_inputs", ("imagenet",))) + ("logmel",)

    def frame_audio(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, mels, T) -> (B, n_frames, 2C): mean and max of the CNN features over each frame's slice."""
        maps = self.audio_cnn(logmel)  # (B, C, T)
        mask = self.slice_mask.to(maps.dtype)  # (F, T)
        count = mask.sum(dim=1)
        mean = torch.einsum("bct,ft->bfc", maps, mask) / count.clamp_min(1)[None, :, None]
        peak = maps[:, None].masked_fill(~self.slice_mask[None, :, None], float("-inf")).amax(dim=-1)  # (B, F, C)
        heard = count > 0
        pooled = torch.cat([mean, torch.where(heard[None, :, None], peak, torch.zeros_like(peak))], dim=2)
        return torch.where(heard[None, :, None], pooled, self.no_audio.to(pooled.dtype).expand_as(pooled))

    def encode(self, batch: dict) -> torch.Tensor:
        x = torch.cat([self.video_project(joined(batch, self.video_inputs)), self.frame_audio(batch["logmel"])], dim=2)
        return self.sequence(self.dropout(x))[0].mean(dim=1)
