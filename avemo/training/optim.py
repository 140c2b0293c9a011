"""Seeds, device choice, optimiser and learning-rate schedule of a training run."""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch
from torch import nn

from ..io import choice

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("plateau", "cosine", "none")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, cfg: dict):
    choice(cfg["optimizer"], OPTIMIZERS, "train.optimizer")
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    return torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])


def make_scheduler(optimizer, cfg: dict):
    choice(cfg["scheduler"], SCHEDULERS, "train.scheduler")
    if cfg["scheduler"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=4)
    if cfg["scheduler"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["epochs"])
    return None


def parameter_digest(model: nn.Module) -> str:
    """sha256 of every parameter's bytes in name order (buffers such as batch-norm statistics excluded)."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
