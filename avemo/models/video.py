"""Video models: sequence models over per-frame embeddings, per-frame voting, and 3D CNNs over face crops."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.utils.checkpoint
from torch import nn

from ..aggregate import AGGREGATIONS
from ..backbones import IMAGENET_MEAN, IMAGENET_STD, load_backbone
from ..errors import ParamError, StageError
from ..io import choice
from ..faces.sampling import sample_indices
from .blocks import N_CLASSES, Classifier, chunked, classifier, joined, joined_shape
from .registry import register

KINETICS_MEAN = torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1)
KINETICS_STD = torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1)


@register("frame_sequence")
class FrameSequence(Classifier):
    """Per-frame features (frames x D; several per-frame inputs side by side, e.g. FER2013 expression
    features and ImageNet embeddings) -> projection -> LSTM or Transformer encoder -> mean over time."""

    def __init__(self, shapes: dict, inputs=("imagenet",), temporal: str = "lstm", hidden: int = 128,
                 layers: int = 1, heads: int = 4, dropout: float = 0.3, bidirectional: bool = True):
        super().__init__()
        self.inputs = tuple(inputs)
        frames, dim = joined_shape(shapes, self.inputs)
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
        return tuple(args.get("inputs", ("imagenet",)))

    def sequence_features(self, batch: dict) -> torch.Tensor:
        x = self.project(joined(batch, self.inputs))
        if self.temporal == "lstm":
            return self.sequence(x)[0]
        return self.sequence(x + self.position[:, :x.shape[1]])

    def encode(self, batch: dict) -> torch.Tensor:
        return self.sequence_features(batch).mean(dim=1)


@register("frame_voting")
class FrameVoting(Classifier):
    """Per-frame classifier on frame embeddings (the backbone is features.backbone), trained on every
    frame with the clip's label; the clip decision aggregates frames by probability sum or majority
    vote with the probability sum breaking ties."""

    def __init__(self, shapes: dict, inputs=("imagenet",), hidden: int = 256, dropout: float = 0.5,
                 aggregation: str = "vote"):
        super().__init__()
        self.inputs = tuple(inputs)
        self.aggregation = choice(aggregation, AGGREGATIONS, "args.aggregation")
        self.frame_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(joined_shape(shapes, self.inputs)[1], hidden),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, N_CLASSES))
        self.latent_size = N_CLASSES

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return tuple(args.get("inputs", ("imagenet",)))

    def frame_logits(self, batch: dict) -> torch.Tensor:
        return self.frame_head(joined(batch, self.inputs))  # (B, T, classes)

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


def normalize_frames(frames: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 BGR face crops -> (B, T, 3, H, W) RGB floats in [0, 1] standardised with
    the 3 channel means and deviations `mean`, `std` (Kinetics for 3D networks, ImageNet for 2D ones):
    the one conversion of every model on raw face crops."""
    x = frames.flip(-1).permute(0, 1, 4, 2, 3).float() / 255.0
    return (x - mean.reshape(1, 1, 3, 1, 1).to(x.device)) / std.reshape(1, 1, 3, 1, 1).to(x.device)


def frames_to_clip(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 BGR face crops -> (B, 3, T, H, W) Kinetics-normalised floats."""
    return normalize_frames(frames, KINETICS_MEAN, KINETICS_STD).transpose(1, 2)


@register("frame_cnn_sequence")
class FrameCNNSequence(Classifier):
    """End-to-end CNN + RNN over the raw face crops: a torchvision ImageNet 2D backbone (resnet18,
    resnet50, mobilenet_v2...) embeds every frame, an LSTM or bidirectional LSTM runs over the frame
    vectors, mean over time, classifier. The designs: ResNet-18 + LSTM, ResNet-50 + BiLSTM. `weights`
    is a torchvision weights name (downloaded through torchvision; where that is impossible the error
    names the file to put in the torch cache, see avemo.backbones.load_backbone) or null for random init.
    `freeze_backbone` trains the temporal model and head only (the backbone stays in evaluation mode)."""

    def __init__(self, shapes: dict, backbone: str = "resnet18", weights: str | None = None, temporal: str = "lstm",
                 hidden: int = 256, layers: int = 1, dropout: float = 0.5, freeze_backbone: bool = False,
                 chunk: int = 256):
        super().__init__()
        self.temporal = choice(temporal, ("lstm", "bilstm"), "args.temporal")
        self.backbone, width, self.weights_used = load_backbone(backbone, weights, param="args")
        self.freeze_backbone, self.chunk = freeze_backbone, chunk
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)
        bidirectional = temporal == "bilstm"
        self.sequence = nn.LSTM(width, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                                dropout=dropout if layers > 1 else 0.0)
        self.latent_size = hidden * (2 if bidirectional else 1)
        self.head = classifier(self.latent_size, dropout)

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        return ("frames",)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # frozen: batch-norm statistics stay those of the weights
        return self

    def frame_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> (B, T, D) backbone embeddings."""
        b, t = frames.shape[:2]
        x = normalize_frames(frames, IMAGENET_MEAN, IMAGENET_STD).flatten(0, 1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            return chunked(self.backbone, x, self.chunk).reshape(b, t, -1)

    def encode(self, batch: dict) -> torch.Tensor:
        return self.sequence(self.dropout(self.frame_embeddings(batch["frames"])))[0].mean(dim=1)


VIDEO_RESNETS = {18: ("BasicBlock", [2, 2, 2, 2]), 34: ("BasicBlock", [3, 4, 6, 3]),
                 50: ("Bottleneck", [3, 4, 6, 3]), 101: ("Bottleneck", [3, 4, 23, 3])}  # torchvision's blocks


def video_resnet(depth: int = 101, weights_path: str | None = None) -> VideoResNet:
    """3D ResNet of `depth` 18, 34, 50 or 101 in torchvision's VideoResNet layout (BasicStem, full 3x3x3
    convolutions: Conv3DSimple; 101 = Bottleneck blocks [3, 4, 23, 3], 2048-d output; 18 = torchvision's
    r3d_18). Kinetics weights from the state dict at `weights_path` when given (see
    load_video_weights), random init otherwise. The fc head is removed; `out_features` is the width."""
    choice(depth, tuple(VIDEO_RESNETS), "args.depth")
    from torchvision.models.video import resnet  # imported here: torchvision costs seconds (predict's start)

    block, layers = VIDEO_RESNETS[depth]
    model = resnet.VideoResNet(getattr(resnet, block), [resnet.Conv3DSimple] * 4, layers, resnet.BasicStem)
    if weights_path:
        load_video_weights(model, weights_path, f"3D ResNet-{depth}")
    model.out_features, model.fc = model.fc.in_features, nn.Identity()
    return model


def load_video_weights(model: nn.Module, path: str | Path, name: str = "3D ResNet") -> None:
    """Load a (Kinetics) state dict from `path` into `model`, strict about every key and shape except the
    classifier `fc.*` (Kinetics' 400 classes are not ours). Accepts a bare state dict or one under
    'state_dict' / 'model', with or without DataParallel's 'module.' prefix. The layout must be
    torchvision's VideoResNet (stem.*, layer1.*...): checkpoints of other code bases (e.g. Hara et
    al.'s 3D-ResNets-PyTorch: conv1.*, a 7x7x7 stem) need their keys converted first."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: {name} weights file not found (args.weights_path); put a state dict of "
                         "this network there, or set weights_path: null to start from random weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise StageError(f"{path}: not a readable PyTorch state dict for {name} ({err})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise StageError(f"{path}: holds a {type(state).__name__}, not a state dict for {name}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        problems = [f"{len(x)} {what} (first: {', '.join(x[:3])})" for x, what in
                    ((missing, "missing keys"), (unexpected, "unexpected keys"), (wrong, "tensors of another shape")) if x]
        raise StageError(f"{path}: not a state dict of this {name} (torchvision VideoResNet layout): "
                         + "; ".join(problems))
    model.load_state_dict(state, strict=False)  # strict apart from fc.*, checked above


def video_feature_map(model: VideoResNet, clip: torch.Tensor, checkpoint: bool = False) -> torch.Tensor:
    """(N, 3, T, H, W) -> the last block's (N, C, T', H', W') feature map, before pooling. `checkpoint`
    (training only) keeps just each residual block's output and recomputes its inside during the
    backward pass: ~1/4 of the activation memory for ~1/3 more compute (batch-norm running statistics
    then see each training batch twice)."""
    x = model.stem(clip)
    for block in [*model.layer1, *model.layer2, *model.layer3, *model.layer4]:
        if checkpoint and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


def snippet_indices(n_frames: int, snippets: int, snippet_frames: int) -> torch.Tensor:
    """(snippets, snippet_frames) frame indices that cover a clip of `n_frames` frames evenly: S
    consecutive snippets of L frames, position k of the S*L at the centre of the k-th of S*L equal
    segments of the clip (avemo.faces.sampling.sample_indices, as the faces stage samples the video). With fewer
    frames than S*L (16 face crops for 6 x 16) every frame repeats S*L/n times (+-1), in order; with
    more (faces.n_frames: 96 for 6 x 16 distinct frames) the frames are subsampled."""
    if n_frames < 1 or snippets < 1 or snippet_frames < 1:
        raise ParamError(f"snippets need frames: n_frames={n_frames}, snippets={snippets}, "
                         f"snippet_frames={snippet_frames}")
    return torch.tensor(sample_indices(n_frames, snippets * snippet_frames)).view(snippets, snippet_frames)


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


VIDEO_BACKBONES = ("plain3d", "r3d_18", "r3d_101", "mvit_v2_s")


@register("video3d")
class Video3D(Classifier):
    """Clip classifiers over the stacked face crops: plain 3D CNN, torchvision r3d_18 (3D ResNet-18),
    r3d_101 (3D ResNet-101 in the same layout, see video_resnet) or mvit_v2_s (MViTv2-S; frames resized
    to its 16 x 224 x 224 input). Kinetics weights through the torchvision weights API when `weights`
    names them (e.g. KINETICS400_V1), or for r3d_18 / r3d_101 from a state dict file `weights_path`;
    random otherwise."""

    def __init__(self, shapes: dict, backbone: str = "plain3d", weights: str | None = None,
                 dropout: float = 0.5, channels=(32, 64, 128, 256), weights_path: str | None = None):
        super().__init__()
        self.backbone_name = choice(backbone, VIDEO_BACKBONES, "args.backbone")
        if weights_path and backbone not in ("r3d_18", "r3d_101"):
            raise ParamError(f"args.weights_path: only for backbone r3d_18 or r3d_101, not {backbone}")
        if backbone == "plain3d":
            self.backbone = Plain3DCNN(channels, dropout)
            self.latent_size = self.backbone.out_features
        elif backbone == "r3d_101":
            if weights:
                raise ParamError("args.weights: torchvision has no r3d_101 weights; use weights_path")
            self.backbone = video_resnet(101, weights_path)
            self.latent_size = self.backbone.out_features
        else:
            import torchvision

            self.backbone = torchvision.models.get_model(backbone, weights=weights)
            if weights_path:
                load_video_weights(self.backbone, weights_path, "3D ResNet-18")
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
