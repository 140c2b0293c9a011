"""One training loop for every model: `train(cfg) -> metrics`, callable from tests and from the stage."""
from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data import FeatureSet, load_feature_set, select_gender, speaker_normalize, split_feature_set
from .ids import EMOTIONS
from .io import atomic_path, choice, read_json
from .models import build_model, model_inputs
from .triplets import TripletSampler

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


RAW_INPUTS = ("frames", "wave")  # normalised inside the models (face crops) or level-dependent (waveform)


class Normalizer:
    """Per-feature mean/std fitted on the training clips only (last axis for embeddings, mel bins for
    log-mel); raw face crops and waveforms pass through unchanged."""

    def __init__(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.stats = stats

    @classmethod
    def fit(cls, data: FeatureSet) -> "Normalizer":
        stats = {}
        for name, values in data.inputs.items():
            if name in RAW_INPUTS:
                continue
            axes = (0, 2) if name == "logmel" else tuple(range(values.ndim - 1))
            mean = values.mean(axis=axes, keepdims=True)[0]
            std = values.std(axis=axes, keepdims=True)[0] + 1e-5
            stats[name] = (mean.astype(np.float32), std.astype(np.float32))
        return cls(stats)

    def tensors(self, data: FeatureSet) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(values if name not in self.stats
                                       else ((values - self.stats[name][0]) / self.stats[name][1]).astype(np.float32))
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


def wave_augment(wave: torch.Tensor, generator: torch.Generator, sample_rate: int = 16000) -> torch.Tensor:
    """Training-only waveform augmentation, one random draw per batch: pitch shift (+-2 semitones),
    time stretch (0.85-1.15x, pitch kept, via the phase vocoder) and additive noise at 15-35 dB SNR."""
    import torchaudio.functional as AF

    length, out = wave.shape[1], wave
    rand = lambda: float(torch.rand(1, generator=generator))  # noqa: E731
    if rand() < 0.5:
        out = AF.pitch_shift(out, sample_rate, n_steps=int(torch.randint(-2, 3, (1,), generator=generator)))
    if rand() < 0.5:
        n_fft, hop = 512, 128
        window = torch.hann_window(n_fft, device=out.device)
        spec = torch.stft(out, n_fft, hop, window=window, return_complex=True)
        phase_advance = torch.linspace(0, torch.pi * hop, spec.shape[1], device=out.device)[..., None]
        spec = AF.phase_vocoder(spec, 0.85 + 0.3 * rand(), phase_advance)
        out = torch.istft(spec, n_fft, hop, window=window)
        out = nn.functional.pad(out, (0, max(0, length - out.shape[1])))[:, :length]
    snr_db = 15 + 20 * rand()
    power = out.pow(2).mean(dim=1, keepdim=True)
    noise = torch.randn(out.shape, generator=generator) * (power / 10 ** (snr_db / 10)).sqrt()
    return out + noise


def augment(batch: dict, generator: torch.Generator) -> dict:
    """Applied to training batches only (never in predict_proba, which validation and test use)."""
    ops = {"logmel": spec_augment, "wave": wave_augment}
    return {k: ops[k](v, generator) if k in ops else v for k, v in batch.items()}


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_proba(model: nn.Module, tensors: dict, device: torch.device | str, batch_size: int = 64) -> np.ndarray:
    """Class probabilities in evaluation mode (no augmentation), batch by batch."""
    model.eval()
    count = len(next(iter(tensors.values())))
    probs = [torch.softmax(model(to_device({k: v[i:i + batch_size] for k, v in tensors.items()}, device)).float(), 1).cpu()
             for i in range(0, count, batch_size)]
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
    data = load_feature_set(Path(cfg["features"]), Path(cfg["metadata"]), needs,
                            Path(cfg["faces"]) if cfg.get("faces") else None)
    data = select_gender(data, cfg["train"].get("gender", "all"))
    single_clip = None
    if cfg["train"].get("speaker_norm"):
        single_clip = Normalizer.fit(split_feature_set(data, cfg["split"])["train"])
        data = speaker_normalize(data)
    parts = split_feature_set(data, cfg["split"])
    parts["single_clip_normalizer"] = single_clip
    return data, parts


class Trainer:
    """Holds the model, optimiser, scheduler and data of one run; `fit` trains with early stopping."""

    def __init__(self, cfg: dict, live=None):
        self.cfg, self.tcfg, self.live = cfg, cfg["train"], live
        seed_everything(self.tcfg["seed"])
        self.device = pick_device(self.tcfg.get("device", "auto"))
        self.data, parts = prepare(cfg)
        self.single_clip = parts.pop("single_clip_normalizer")
        self.normalizer = Normalizer.fit(parts["train"])
        self.train_x, self.val_x = self.normalizer.tensors(parts["train"]), self.normalizer.tensors(parts["val"])
        self.train_y, self.val_y = torch.from_numpy(parts["train"].labels), torch.from_numpy(parts["val"].labels)
        self.shapes = {k: tuple(v.shape[1:]) for k, v in self.train_x.items()}
        self.model = build_model(cfg["architecture"], self.shapes, cfg.get("args", {})).to(self.device)
        self.optimizer = make_optimizer(self.model, self.tcfg)
        self.scheduler = make_scheduler(self.optimizer, self.tcfg)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.tcfg["label_smoothing"])
        self.generator = torch.Generator().manual_seed(self.tcfg["seed"])
        self.triplets = TripletSampler(parts["train"].labels, self.generator) \
            if getattr(self.model, "triplet_weight", 0) > 0 else None
        self.amp = self.device.type == "cuda" and self.tcfg.get("amp", True)
        self.best = {"val_accuracy": -1.0, "val_loss": float("nan"), "epoch": 0}
        self.best_state, self.start_epoch = None, 1

    def last_path(self) -> Path:
        path = Path(self.cfg["checkpoint"])
        return path.parent / "last" / f"{path.stem}.last.pt"

    def state(self, epoch: int) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None, "epoch": epoch,
                "config": self.cfg, "normalizer": self.normalizer.state_dict(), "shapes": self.shapes,
                # speaker_norm: global training statistics, the stand-in for one clip of an unknown person
                "single_clip_normalizer": self.single_clip.state_dict() if self.single_clip else None,
                "classes": list(EMOTIONS), "feature_info": read_json(Path(self.cfg["features"]) / "info.json")}

    def resume(self) -> None:
        """Continue an interrupted run from its last checkpoint when the configuration is unchanged."""
        path = self.last_path()
        if not (self.tcfg.get("resume") and path.exists()):
            return
        saved = torch.load(path, map_location=self.device, weights_only=False)
        if saved["config"] != self.cfg:
            print(f"{path}: configuration changed since it was written; training from scratch")
            return
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler and saved["scheduler"]:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.best, self.best_state = saved["best"], saved["best_state"]
        self.generator.set_state(saved["generator"])
        self.start_epoch = saved["epoch"] + 1
        print(f"{path}: resuming after epoch {saved['epoch']}")

    def loss(self, batch: dict, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        batch, labels = to_device(batch, self.device), labels.to(self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            if hasattr(self.model, "loss"):
                loss = self.model.loss(batch, labels, self.loss_fn)
            else:
                loss = self.loss_fn(self.model(batch), labels)
            if self.triplets is not None:
                positives, negatives = self.triplets.sample(index.numpy())
                pick = lambda rows: to_device({k: v[rows] for k, v in self.train_x.items()}, self.device)  # noqa: E731
                loss = loss + self.model.triplet_weight * self.model.triplet_loss(batch, pick(positives), pick(negatives))
        return loss.float()

    def train_epoch(self) -> float:
        self.model.train()
        total, count = 0.0, 0
        order = torch.randperm(len(self.train_y), generator=self.generator)
        if self.tcfg.get("limit_batches"):  # smoke configuration
            order = order[:self.tcfg["limit_batches"] * self.tcfg["batch_size"]]
        for start in range(0, len(order), self.tcfg["batch_size"]):
            index = order[start:start + self.tcfg["batch_size"]]
            batch = {k: v[index] for k, v in self.train_x.items()}
            batch = augment(batch, self.generator) if self.tcfg["augment"] else batch
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(batch, self.train_y[index], index)
            loss.backward()
            if self.tcfg.get("grad_clip"):
                nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg["grad_clip"])
            self.optimizer.step()
            total, count = total + loss.item() * len(index), count + len(index)
        return total / count

    def validate(self) -> tuple[float, float]:
        count = len(self.val_y)
        if self.tcfg.get("limit_batches"):  # smoke configuration: the first clips only
            count = min(count, self.tcfg["limit_batches"] * self.tcfg["batch_size"])
        probs = predict_proba(self.model, {k: v[:count] for k, v in self.val_x.items()}, self.device)
        labels = self.val_y[:count]
        accuracy = float((probs.argmax(1) == labels.numpy()).mean())
        loss = float(nn.functional.nll_loss(torch.log(torch.from_numpy(probs) + 1e-9), labels))
        return accuracy, loss

    def log(self, values: dict) -> None:
        if self.live is not None:
            for key, value in values.items():
                self.live.log_metric(key, value)
            self.live.next_step()

    def fit(self) -> dict:
        self.resume()
        epoch, stale = self.start_epoch - 1, 0
        for epoch in tqdm(range(self.start_epoch, self.tcfg["epochs"] + 1), desc=f"train {self.cfg['model']}",
                          unit="epoch"):
            train_loss = self.train_epoch()
            val_acc, val_loss = self.validate()
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_acc)
            elif self.scheduler is not None:
                self.scheduler.step()
            self.log({"train/loss": train_loss, "val/loss": val_loss, "val/accuracy": val_acc,
                      "lr": self.optimizer.param_groups[0]["lr"]})
            if val_acc > self.best["val_accuracy"]:
                self.best = {"val_accuracy": val_acc, "val_loss": val_loss, "epoch": epoch}
                self.best_state = copy.deepcopy(self.state(epoch))
                stale = 0
            else:
                stale += 1
            with atomic_path(self.last_path()) as tmp:  # every epoch: what `resume` continues from
                torch.save({**self.state(epoch), "best": self.best, "best_state": self.best_state,
                            "generator": self.generator.get_state()}, tmp)
            if stale >= self.tcfg["patience"]:
                break
        with atomic_path(self.cfg["checkpoint"]) as tmp:
            torch.save(self.best_state, tmp)
        return {"best_epoch": self.best["epoch"], "epochs_run": epoch,
                "val_accuracy": round(self.best["val_accuracy"], 4), "val_loss": round(self.best["val_loss"], 4),
                "train_clips": len(self.train_y), "val_clips": len(self.val_y),
                "excluded_clips": len(self.data.excluded), "device": str(self.device)}


def train(cfg: dict, live=None) -> dict:
    """Train one model from `cfg` (model, architecture, args, train, split, features, metadata, faces,
    checkpoint); keep the epoch with the best validation accuracy. Returns validation metrics."""
    return Trainer(cfg, live).fit()


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu"):
    """Model (eval mode), normaliser and the checkpoint dict from a file written by `train`."""
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    cfg = checkpoint["config"]
    model = build_model(cfg["architecture"], checkpoint["shapes"], cfg.get("args", {}))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), Normalizer.from_state_dict(checkpoint["normalizer"]), checkpoint
