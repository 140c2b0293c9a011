"""torchvision ImageNet backbones without their classifier (an embedding per image), loaded through
torchvision's API: the ImageNet encoders of avemo/encoders/imagenet.py and the models that fine-tune a
frame CNN (avemo/models) share them."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
from torch import nn

from .errors import ParamError, StageError
from .io import choice

BACKBONES = ("mobilenet_v2", "resnet18", "resnet50", "resnet101")
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _resolve_weights(name: str, weights: str | None, param: str = "features"):
    if weights in (None, "none"):
        return None
    import torchvision  # here, not at the top: torchvision costs seconds of every predict's start

    enum = torchvision.models.get_model_weights(name)
    if weights not in enum.__members__ and weights != "DEFAULT":
        raise ParamError(f"{param}.weights: '{weights}' is not valid for {name}; choose one of: "
                         f"{', '.join(list(enum.__members__) + ['DEFAULT', 'none'])}")
    return enum[weights] if weights != "DEFAULT" else enum.DEFAULT


def load_backbone(name: str, weights: str | None, param: str = "features") -> tuple[nn.Module, int, str]:
    """Backbone with its classifier removed, its embedding size, and the name of the weights used.

    Weights come through torchvision's standard API (downloaded to the torch hub cache on first use);
    when they cannot be had, fail loudly naming the file to place in the cache. `param` is the
    params.yaml section named in messages (models reuse this loader with `models.<name>.args`)."""
    choice(name, BACKBONES, f"{param}.backbone")
    resolved = _resolve_weights(name, weights, param)
    try:
        import torchvision

        model = torchvision.models.get_model(name, weights=resolved)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        raise StageError(
            f"cannot load {name} weights {resolved} ({err}). Download {resolved.url} and place it as "
            f"{checkpoints / Path(resolved.url).name}, or set {param}.weights: none to train on a "
            "random backbone (recorded as such in every metric)") from None
    if hasattr(model, "fc"):
        size, model.fc = model.fc.in_features, nn.Identity()
    else:
        size, model.classifier = model.classifier[-1].in_features, nn.Identity()
    used = f"{name}:{resolved.name if resolved else 'random-init'}"
    if resolved is None:
        print(f"WARNING: {name} uses random weights ({param}.weights: none); embeddings carry no ImageNet knowledge")
    return model.eval(), size, used
