"""Checkpoints as one dict: model, optimizer, scheduler, epoch, config, and what inference needs besides
(the protocol statistics of the training actors, input shapes, classes, the encoders' weights)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..ids import EMOTIONS
from ..modelfile import load_checkpoint_file, save_checkpoint
from ..models import build_model
from ..normalize import ProtocolNormalizer


def checkpoint_dict(model, optimizer, scheduler, epoch: int, cfg: dict, norm: ProtocolNormalizer,
                    mode: str, shapes: dict, feature_info: dict, extra: dict | None = None) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler else None, "epoch": epoch, "config": cfg,
            "normalization": {"mode": mode, **norm.state_dict()}, "shapes": shapes, "classes": list(EMOTIONS),
            "feature_info": feature_info, **(extra or {})}


def save(state: dict, path: str | Path) -> None:
    """Plain data only (avemo.modelfile): read back without executing code."""
    save_checkpoint(state, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu"):
    """Model (eval mode), its ProtocolNormalizer and the checkpoint dict, from a file written by `train`."""
    return model_from_checkpoint(load_checkpoint_file(path, device), device)


def model_from_checkpoint(checkpoint: dict, device: torch.device | str = "cpu"):
    """(model in eval mode, ProtocolNormalizer, checkpoint) of a checkpoint dict already read."""
    cfg = checkpoint["config"]
    model = build_model(cfg["architecture"], checkpoint["shapes"], cfg.get("args", {}))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), ProtocolNormalizer.from_state_dict(checkpoint["normalization"]), checkpoint
