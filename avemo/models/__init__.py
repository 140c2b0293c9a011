"""Models by architecture name. Each takes a dict of input tensors and returns class logits; `encode`
gives the latent vector that fusion models combine. Inputs (avemo.data.INPUTS): per-frame face features
'imagenet' (frames x D) and 'fer' (frames x 135), 'frames' (frames x H x W x 3 uint8 face crops),
'logmel' (mels x steps), 'wave' (samples), 'spectrogram' (D, the ImageNet embedding of the log-mel
image), and speech encoder states 'whisper', 'wav2vec2', 'hubert', 'wavlm' (steps x D)."""
from __future__ import annotations

from torch import nn

from ..io import choice
from .audio import EmbeddingMLP, SpectrogramCNN, WaveCNN
from .blocks import N_CLASSES
from .fusion import AVFrameLSTM, ConcatFusion, CrossModalAttentionFusion, SnippetCrossAttention
from .late import LateFusion
from .video import FrameCNNSequence, FrameSequence, FrameVoting, Video3D

ARCHITECTURES = {
    "logmel_cnn": SpectrogramCNN,
    "spectrogram_cnn": SpectrogramCNN,
    "wave_cnn": WaveCNN,
    "embedding_mlp": EmbeddingMLP,
    "frame_sequence": FrameSequence,
    "frame_voting": FrameVoting,
    "frame_cnn_sequence": FrameCNNSequence,
    "video3d": Video3D,
    "concat_fusion": ConcatFusion,
    "cross_attention_fusion": CrossModalAttentionFusion,
    "snippet_cross_attention": SnippetCrossAttention,
    "av_frame_lstm": AVFrameLSTM,
    "late_fusion": LateFusion,
}


def build_model(architecture: str, shapes: dict, args: dict) -> nn.Module:
    choice(architecture, ARCHITECTURES, "architecture")
    return ARCHITECTURES[architecture](shapes, **args)


def model_inputs(architecture: str, args: dict) -> tuple[str, ...]:
    """Input names a model needs, known before any data is loaded."""
    choice(architecture, ARCHITECTURES, "architecture")
    return ARCHITECTURES[architecture].input_names(args)


__all__ = ["ARCHITECTURES", "N_CLASSES", "build_model", "model_inputs"]
