"""Assemble one model's training configuration from params.yaml."""
from __future__ import annotations

import copy

from .errors import ParamError


def model_config(params: dict, name: str, **paths) -> dict:
    """`models.<name>` with `train_defaults` under its `train` overrides, the split, the runtime choices
    that do not change results (device, resume) and the paths (inputs, metadata, checkpoint)."""
    models = params.get("models", {})
    if name not in models:
        raise ParamError(f"model '{name}' is not in params.yaml models; choose one of: {', '.join(models)}")
    entry = copy.deepcopy(models[name])
    train = {**params["train_defaults"], **entry.get("train", {})}
    return {"model": name, "architecture": entry["architecture"], "args": entry.get("args", {}),
            "train": train, "split": params["split"], "runtime": dict(params.get("runtime", {})), **paths}
