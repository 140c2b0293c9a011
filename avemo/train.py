"""One training loop for every model: `train(cfg) -> metrics`, callable from tests and from the stage."""
from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data import FeatureSet, load_feature_set, split_feature_set
from .ids import EMOTIONS
from .io import atomic_path, choice, read_json
from .models import build_model, model_inputs

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("plateau", "cosine", "none")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> torch.device:
    choice(requested, ("auto", "cpu", "cuda"), "train.device")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class Normalizer:
    """Per-feature mean/std fitted on the training clips only (last axis for embeddings, mel bins for log-mel)."""

    def __init__(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.stats = stats

    @classmethod
    def fit(cls, data: FeatureSet) -> "Normalizer":
        stats = {}
        for name, values in data.inputs.items():
            axes = (0, 2) if name == "logmel" else tuple(range(values.ndim - 1))
            mean = values.mean(axis=axes, keepdims=True)[0]
            std = values.std(axis=axes, keepdims=True)[0] + 1e-5
            stats[name] = (mean.astype(np.float32), std.astype(np.float32))
        return cls(stats)

    def tensors(self, data: FeatureSet) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy((values - self.stats[name][0]) / self.stats[name][1]).float()
                for name, values in data.inputs.items()}

    def state_dict(self) -> dict:
        return {k: (torch.from_numpy(m), torch.from_numpy(s)) for k, (m, s) in self.stats.items()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalizer":
        return cls({k: (m.numpy(), s.numpy()) for k, (m, s) in state.items()})


def spec_augment(logmel: torch.Tensor, generator: torch.Generator, max_freq: int = 8, max_time: int = 30,
                 max_shift: int = 20) -> torch.Tensor:
    """Training-only log-mel augmentation: random circular time shift, one frequency and one time mask."""
    out = logmel.clone()
    batch, mels, frames = out.shape
    for i in range(batch):
        shift = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=generator))
        out[i] = torch.roll(out[i], shift, dims=1)
        f = int(torch.randint(0, max_freq + 1, (1,), generator=generator))
        f0 = int(torch.randint(0, mels - f + 1, (1,), generator=generator))
        t = int(torch.randint(0, max_time + 1, (1,), generator=generator))
        t0 = int(torch.randint(0, frames - t + 1, (1,), generator=generator))
        out[i, f0:f0 + f, :] = 0.0
        out[i, :, t0:t0 + t] = 0.0
    return out


def augment(batch: dict, generator: torch.Generator) -> dict:
    return {k: spec_augment(v, generator) if k == "logmel" else v for k, v in batch.items()}


def batches(tensors: dict, labels: torch.Tensor, size: int, order: torch.Tensor | None = None):
    order = torch.arange(len(labels)) if order is None else order
    for start in range(0, len(order), size):
        index = order[start:start + size]
        yield {k: v[index] for k, v in tensors.items()}, labels[index]


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_proba(model: nn.Module, tensors: dict, device: torch.device, batch_size: int = 64) -> np.ndarray:
    model.eval()
    dummy = torch.zeros(len(next(iter(tensors.values()))), dtype=torch.long)
    probs = [torch.softmax(model(to_device(b, device)).float(), dim=1).cpu() for b, _ in batches(tensors, dummy, batch_size)]
    return torch.cat(probs).numpy()


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


def prepare(cfg: dict):
    """Load features for the model's inputs, split by actor, fit the normaliser on train only."""
    needs = model_inputs(cfg["architecture"], cfg.get("args", {}))
    data = load_feature_set(Path(cfg["features"]), Path(cfg["metadata"]), needs)
    parts = split_feature_set(data, cfg["split"])
    return data, parts


def train(cfg: dict, live=None) -> dict:
    """Train one model from `cfg` (model, architecture, args, train, split, features, metadata,
    checkpoint); keep the epoch with the best validation accuracy. Returns validation metrics."""
    tcfg = cfg["train"]
    seed_everything(tcfg["seed"])
    device = pick_device(tcfg.get("device", "auto"))
    data, parts = prepare(cfg)
    normalizer = Normalizer.fit(parts["train"])
    train_x, val_x = normalizer.tensors(parts["train"]), normalizer.tensors(parts["val"])
    train_y, val_y = torch.from_numpy(parts["train"].labels), torch.from_numpy(parts["val"].labels)
    shapes = {k: tuple(v.shape[1:]) for k, v in train_x.items()}
    model = build_model(cfg["architecture"], shapes, cfg.get("args", {})).to(device)
    optimizer, loss_fn = make_optimizer(model, tcfg), nn.CrossEntropyLoss(label_smoothing=tcfg["label_smoothing"])
    scheduler = make_scheduler(optimizer, tcfg)
    generator = torch.Generator().manual_seed(tcfg["seed"])
    best = {"val_accuracy": -1.0, "epoch": 0}
    best_state, stale = None, 0
    for epoch in tqdm(range(1, tcfg["epochs"] + 1), desc=f"train {cfg['model']}", unit="epoch"):
        model.train()
        total, count = 0.0, 0
        for batch, labels in batches(train_x, train_y, tcfg["batch_size"], torch.randperm(len(train_y), generator=generator)):
            batch = augment(batch, generator) if tcfg["augment"] else batch
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(to_device(batch, device)), labels.to(device))
            loss.backward()
            if tcfg.get("grad_clip"):
                nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
            optimizer.step()
            total, count = total + loss.item() * len(labels), count + len(labels)
        val_probs = predict_proba(model, val_x, device)
        val_acc = float((val_probs.argmax(1) == val_y.numpy()).mean())
        val_loss = float(nn.functional.nll_loss(torch.log(torch.from_numpy(val_probs) + 1e-9), val_y))
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_acc)
        elif scheduler is not None:
            scheduler.step()
        if live is not None:
            for key, value in {"train/loss": total / count, "val/loss": val_loss, "val/accuracy": val_acc,
                               "lr": optimizer.param_groups[0]["lr"]}.items():
                live.log_metric(key, value)
            live.next_step()
        if val_acc > best["val_accuracy"]:
            best = {"val_accuracy": val_acc, "val_loss": val_loss, "epoch": epoch}
            best_state = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict() if scheduler else None})
            stale = 0
        else:
            stale += 1
            if stale >= tcfg["patience"]:
                break
    checkpoint = {**best_state, "epoch": best["epoch"], "config": cfg, "normalizer": normalizer.state_dict(),
                  "shapes": shapes, "classes": list(EMOTIONS), "feature_info": read_json(Path(cfg["features"]) / "info.json")}
    with atomic_path(cfg["checkpoint"]) as tmp:
        torch.save(checkpoint, tmp)
    return {"best_epoch": best["epoch"], "epochs_run": epoch, "val_accuracy": round(best["val_accuracy"], 4),
            "val_loss": round(best["val_loss"], 4), "train_clips": len(train_y), "val_clips": len(val_y),
            "excluded_clips": len(data.excluded), "device": str(device)}


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu"):
    """Model (eval mode), normaliser and the checkpoint dict from a file written by `train`."""
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    cfg = checkpoint["config"]
    model = build_model(cfg["architecture"], checkpoint["shapes"], cfg.get("args", {}))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), Normalizer.from_state_dict(checkpoint["normalizer"]), checkpoint
