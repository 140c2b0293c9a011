"""One training loop for every model: `train(cfg) -> metrics`, callable from tests and from the stage."""
from __future__ import annotations

import copy
import hashlib
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data import FeatureSet, load_feature_set, select_gender, speaker_normalize, split_feature_set
from .ids import EMOTIONS
from .io import atomic_path, choice, read_json
from .errors import ParamError
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


class Distributed:
    """This process's place in a `torchrun` job, from the variables torchrun sets (WORLD_SIZE, RANK,
    LOCAL_RANK); world size 1, rank 0 when started without it. `start` joins the process group (nccl on
    CUDA, gloo on CPU), `close` leaves it; collectives are no-ops in a single process."""

    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.world_size = int(env.get("WORLD_SIZE", "1"))
        self.rank = int(env.get("RANK", "0"))
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        self.backend, self.owns_group = None, False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """pick_device's choice; under torchrun with CUDA, the GPU cuda:LOCAL_RANK of this node."""
        device = pick_device(requested)
        if not self.enabled or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise ParamError(f"torchrun: local rank {self.local_rank} but {torch.cuda.device_count()} CUDA "
                             f"device(s) on this machine; start at most that many processes per node")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        if not self.enabled:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            self.backend = dist.get_backend()
            return
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(self.backend, device_id=device if device.type == "cuda" else None)
        self.owns_group = True

    def close(self) -> None:
        import torch.distributed as dist

        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over all ranks."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def from_main(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's `values` on every rank."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def gather(self, value) -> list:
        """Every rank's (picklable) `value`, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


class Objective(nn.Module):
    """The training loss as one module call: the model's own `loss` (frame_voting) or cross-entropy on
    its output, plus the weighted triplet loss on (anchor, positive, negative) clips when the model has
    one. Under torchrun this module is what DistributedDataParallel wraps, so that `loss` and
    `triplet_loss`, which are not `forward`, still run inside the wrapper's forward and their gradients
    are averaged over the ranks like any other."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: dict, labels: torch.Tensor, positive: dict | None = None,
                negative: dict | None = None) -> torch.Tensor:
        if hasattr(self.model, "loss"):
            loss = self.model.loss(batch, labels, self.loss_fn)
        else:
            loss = self.loss_fn(self.model(batch), labels)
        if positive is not None:
            loss = loss + self.model.triplet_weight * self.model.triplet_loss(batch, positive, negative)
        return loss


def parameter_digest(model: nn.Module) -> str:
    """sha256 of every parameter's bytes in name order (buffers such as batch-norm statistics excluded)."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
    """Holds the model, optimiser, scheduler and data of one run; `fit` trains with early stopping.

    Started by `torchrun` (WORLD_SIZE > 1), every process builds the same Trainer; the training
    objective is wrapped in DistributedDataParallel (`net`), each epoch's shuffled clips are shared out
    between the ranks, rank 0 validates and decides, and only rank 0 writes checkpoints and logs. With
    one process nothing of that runs and the numbers are those of a plain run."""

    def __init__(self, cfg: dict, live=None):
        self.cfg, self.tcfg, self.live = cfg, cfg["train"], live
        self.dist = Distributed()
        seed_everything(self.tcfg["seed"])
        self.device = self.dist.device(self.tcfg.get("device", "auto"))
        self.dist.start(self.device)
        self.data, parts = prepare(cfg)
        self.single_clip = parts.pop("single_clip_normalizer")
        self.normalizer = Normalizer.fit(parts["train"])
        self.train_x, self.val_x = self.normalizer.tensors(parts["train"]), self.normalizer.tensors(parts["val"])
        self.train_y, self.val_y = torch.from_numpy(parts["train"].labels), torch.from_numpy(parts["val"].labels)
        self.train_clips = parts["train"].clips
        self.shapes = {k: tuple(v.shape[1:]) for k, v in self.train_x.items()}
        self.model = build_model(cfg["architecture"], self.shapes, cfg.get("args", {})).to(self.device)
        self.optimizer = make_optimizer(self.model, self.tcfg)
        self.scheduler = make_scheduler(self.optimizer, self.tcfg)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.tcfg["label_smoothing"])
        self.generator = torch.Generator().manual_seed(self.tcfg["seed"])
        # The epoch permutation: one generator with the seed, identical on every rank. In one process it
        # is the augmentation generator itself (as it always was); under torchrun each rank draws its
        # augmentations, triplets and dropout from a seed of its own instead.
        self.order_generator = self.generator
        self.net = Objective(self.model, self.loss_fn)
        self.shards: list[list[int]] = []  # under torchrun: this rank's training clips (indices), per epoch
        if self.dist.enabled:
            rank_seed = int(np.random.SeedSequence([self.tcfg["seed"], self.dist.rank]).generate_state(1)[0])
            self.generator = torch.Generator().manual_seed(rank_seed)
            torch.manual_seed(rank_seed)
            from torch.nn.parallel import DistributedDataParallel

            # find_unused_parameters: some models never use a few parameters in training (fusion_concat's
            # sub-model heads), whose gradients DDP would otherwise wait for forever. It costs one walk
            # over the autograd graph per step; the warning DDP prints once for models without unused
            # parameters is only about that cost.
            self.net = DistributedDataParallel(self.net, device_ids=[self.device.index] if self.device.type == "cuda"
                                               else None, find_unused_parameters=True)
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
                "classes": list(EMOTIONS), "feature_info": read_json(Path(self.cfg["features"]) / "info.json"),
                # trained under torchrun: how (absent from single-process checkpoints)
                **({"distributed": {"world_size": self.dist.world_size, "backend": self.dist.backend}}
                   if self.dist.enabled else {})}

    def resume(self) -> None:
        """Continue an interrupted run from its last checkpoint when the configuration is unchanged
        (and, under torchrun, the number of processes; every rank reads the same file)."""
        self._resume()
        if self.dist.enabled and self.tcfg.get("resume"):
            starts = self.dist.gather(self.start_epoch)
            if len(set(starts)) > 1:
                raise ParamError(f"train.resume: the ranks found different last checkpoints (next epochs {starts}); "
                                 f"{self.last_path().parent} must be on a file system every node sees")

    def _resume(self) -> None:
        path = self.last_path()
        if not (self.tcfg.get("resume") and path.exists()):
            return
        saved = torch.load(path, map_location=self.device, weights_only=False)
        if saved["config"] != self.cfg:
            print(f"{path}: configuration changed since it was written; training from scratch")
            return
        if saved.get("world_size", 1) != self.dist.world_size:
            print(f"{path}: written by {saved.get('world_size', 1)} process(es), this run has "
                  f"{self.dist.world_size}; training from scratch")
            return
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler and saved["scheduler"]:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.best, self.best_state = saved["best"], saved["best_state"]
        if self.dist.enabled:
            self.generator.set_state(saved["rank_generators"][self.dist.rank])
            self.order_generator.set_state(saved["order_generator"])
        else:
            self.generator.set_state(saved["generator"])
        self.start_epoch = saved["epoch"] + 1
        print(f"{path}: resuming after epoch {saved['epoch']}")

    def save_last(self, epoch: int) -> None:
        """Every epoch: what `resume` continues from (written by rank 0 only)."""
        extra = {}
        if self.dist.enabled:  # every rank's generator, gathered before rank 0 writes
            extra = {"world_size": self.dist.world_size, "order_generator": self.order_generator.get_state(),
                     "rank_generators": self.dist.gather(self.generator.get_state())}
        if self.dist.main:
            with atomic_path(self.last_path()) as tmp:
                torch.save({**self.state(epoch), "best": self.best, "best_state": self.best_state,
                            "generator": self.generator.get_state(), **extra}, tmp)

    def loss(self, batch: dict, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        batch, labels = to_device(batch, self.device), labels.to(self.device)
        positive = negative = None
        if self.triplets is not None:
            positives, negatives = self.triplets.sample(index.numpy())
            pick = lambda rows: to_device({k: v[rows] for k, v in self.train_x.items()}, self.device)  # noqa: E731
            positive, negative = pick(positives), pick(negatives)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            loss = self.net(batch, labels, positive, negative)
        return loss.float()

    def epoch_order(self) -> torch.Tensor:
        """This process's training clips for one epoch, in order: a permutation of the training
        partition drawn from the seed (the same on every rank), cut to `limit_batches` steps, and under
        torchrun rank r's contiguous share of it; all shares have the same size (the at most
        world_size - 1 clips left over are skipped this epoch), so every rank takes the same number of
        steps."""
        order = torch.randperm(len(self.train_y), generator=self.order_generator)
        world = self.dist.world_size
        if self.tcfg.get("limit_batches"):  # smoke configuration: that many steps per epoch
            order = order[:self.tcfg["limit_batches"] * self.tcfg["batch_size"] * world]
        if self.dist.enabled:
            share = len(order) // world
            if share == 0:
                raise ParamError(f"torchrun: {len(order)} training clips cannot be shared by {world} processes")
            order = order[self.dist.rank * share:(self.dist.rank + 1) * share]
            self.shards.append(order.tolist())
        return order

    def train_epoch(self) -> float:
        """One pass over this process's clips; the mean training loss over every rank's clips."""
        self.net.train()
        total, count = 0.0, 0
        order = self.epoch_order()
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
        if self.dist.enabled:
            total, count = self.dist.sum([total, count], self.device)
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

    def validated(self) -> tuple[float, float]:
        """Validation accuracy and loss; under torchrun computed by rank 0 and sent to every rank, so
        that the schedulers, the best epoch and early stopping agree everywhere."""
        if not self.dist.enabled:
            return self.validate()
        values = self.validate() if self.dist.main else (0.0, 0.0)
        accuracy, loss = self.dist.from_main(list(values), self.device)
        return accuracy, loss

    def log(self, values: dict) -> None:
        if self.live is not None and self.dist.main:
            for key, value in values.items():
                self.live.log_metric(key, value)
            self.live.next_step()

    def fit(self) -> dict:
        self.resume()
        epoch, stale = self.start_epoch - 1, 0
        for epoch in tqdm(range(self.start_epoch, self.tcfg["epochs"] + 1), desc=f"train {self.cfg['model']}",
                          unit="epoch", disable=not self.dist.main):
            train_loss = self.train_epoch()
            val_acc, val_loss = self.validated()
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_acc)
            elif self.scheduler is not None:
                self.scheduler.step()
            self.log({"train/loss": train_loss, "val/loss": val_loss, "val/accuracy": val_acc,
                      "lr": self.optimizer.param_groups[0]["lr"]})
            if val_acc > self.best["val_accuracy"]:
                self.best = {"val_accuracy": val_acc, "val_loss": val_loss, "epoch": epoch}
                self.best_state = copy.deepcopy(self.state(epoch)) if self.dist.main else None
                stale = 0
            else:
                stale += 1
            self.save_last(epoch)
            stop = stale >= self.tcfg["patience"]
            if self.dist.enabled:  # rank 0's decision (the same numbers give the same one everywhere)
                stop = bool(self.dist.from_main([float(stop)], self.device)[0])
            if stop:
                break
        if self.dist.main:
            with atomic_path(self.cfg["checkpoint"]) as tmp:
                torch.save(self.best_state, tmp)
        metrics = {"best_epoch": self.best["epoch"], "epochs_run": epoch,
                   "val_accuracy": round(self.best["val_accuracy"], 4), "val_loss": round(self.best["val_loss"], 4),
                   "train_clips": len(self.train_y), "val_clips": len(self.val_y),
                   "excluded_clips": len(self.data.excluded), "device": str(self.device)}
        if self.dist.enabled:
            metrics["distributed"] = {
                "world_size": self.dist.world_size, "rank": self.dist.rank, "backend": self.dist.backend,
                "clips_per_epoch": len(self.shards[-1]) if self.shards else 0,
                "clips_trained": sum(map(len, self.shards)),
                "params_sha256": parameter_digest(self.model)}  # the same on every rank
            self.dist.barrier()  # every rank returns once the checkpoint is written
        return metrics

    def close(self) -> None:
        """Leave the torchrun process group (if this Trainer joined it)."""
        self.dist.close()


def train(cfg: dict, live=None, rank_report: str | Path | None = None) -> dict:
    """Train one model from `cfg` (model, architecture, args, train, split, features, metadata, faces,
    checkpoint); keep the epoch with the best validation accuracy. Returns validation metrics.

    Under torchrun, every process calls this; `rank_report` (a directory) then receives one
    `rank<R>.json` per process with its metrics and the clips it trained on in each epoch."""
    trainer = Trainer(cfg, live)
    try:
        metrics = trainer.fit()
        if rank_report is not None and trainer.dist.enabled:
            from .io import write_json

            shards = [[str(trainer.train_clips[i]) for i in shard] for shard in trainer.shards]
            write_json(Path(rank_report) / f"rank{trainer.dist.rank}.json", {**metrics, "clips": shards})
        return metrics
    finally:
        trainer.close()


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu"):
    """Model (eval mode), normaliser and the checkpoint dict from a file written by `train`."""
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    cfg = checkpoint["config"]
    model = build_model(cfg["architecture"], checkpoint["shapes"], cfg.get("args", {}))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), Normalizer.from_state_dict(checkpoint["normalizer"]), checkpoint
