"""Architectures by name: each model class registers itself (`@register("name")`) where it is defined, and
`build_model` / `model_inputs` look them up. The package's __init__ imports every model module, so the
registry is full before anything is built; composite models build their parts through it too."""
from __future__ import annotations

from torch import nn

from ..io import choice

ARCHITECTURES: dict[str, type] = {}


def register(*names: str):
    def add(cls):
        for name in names:
            ARCHITECTURES[name] = cls
        return cls
    return add


def build_model(architecture: str, shapes: dict, args: dict) -> nn.Module:
    choice(architecture, ARCHITECTURES, "architecture")
    return ARCHITECTURES[architecture](shapes, **args)


def model_inputs(architecture: str, args: dict) -> tuple[str, ...]:
    """Input names a model needs, known before any data is loaded."""
    choice(architecture, ARCHITECTURES, "architecture")
    return ARCHITECTURES[architecture].input_names(args)
