"""One training loop for every model: `train(cfg) -> metrics`, callable from tests and from the stage."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data import feature_info, input_paths
from ..errors import ParamError
from ..io import choice
from ..modelfile import load_checkpoint_file
from ..models import build_model, model_inputs
from ..normalize import MODES, ProtocolNormalizer
from ..triplets import TripletSampler
from .augment import augment
from .checkpoint import checkpoint_dict, save
from .dataset import prepare, protocol_inputs
from .distributed import Distributed
from .inference import as_tensors, predict_proba, to_device
from .objective import Objective
from .optim import make_optimizer, make_scheduler, parameter_digest, seed_everything
from ..protocols import PROTOCOLS, SINGLE_CLIP


class Trainer:
    """Holds the model, optimiser, scheduler and data of one run; `fit` trains with early stopping.

    Inputs are standardised as `train.normalization` says (avemo.normalize): in `enrolment` mode each
    epoch draws new statistics for every training clip. The epoch kept is the one with the best
    validation accuracy under `train.select_on` (single_clip by default: the headline protocol).

    Started by `torchrun` (WORLD_SIZE > 1), every process builds the same Trainer; the training
    objective is wrapped in DistributedDataParallel (`net`), each epoch's shuffled clips are shared out
    between the ranks, rank 0 validates and decides, and only rank 0 writes checkpoints and logs. With
    one process nothing of that runs and the numbers are those of a plain run."""

    def __init__(self, cfg: dict, live=None):
        self.cfg, self.tcfg, self.live = cfg, cfg["train"], live
        self.runtime = cfg.get("runtime", {})
        self.mode = choice(self.tcfg.get("normalization", "enrolment"), MODES, "train.normalization")
        self.protocol = choice(self.tcfg.get("select_on", SINGLE_CLIP), PROTOCOLS, "train.select_on")
        self.dist = Distributed()
        seed_everything(self.tcfg["seed"])
        self.device = self.dist.device(self.runtime.get("device", "auto"))
        self.dist.start(self.device)
        self.data, parts = prepare(cfg)
        self.train_part, val = parts["train"], parts["val"]
        self.norm = ProtocolNormalizer.fit(self.train_part.inputs, self.tcfg.get("prior_clips", 2.0))
        self.view_rng = np.random.default_rng(self.tcfg["seed"])
        self.train_x = self.training_view()
        self.val_x = as_tensors(protocol_inputs(self.norm, val, self.protocol))
        self.train_y, self.val_y = torch.from_numpy(self.train_part.labels), torch.from_numpy(val.labels)
        self.shapes = {k: tuple(v.shape[1:]) for k, v in self.train_x.items()}
        self.model = build_model(cfg["architecture"], self.shapes, cfg.get("args", {})).to(self.device)
        self.optimizer = make_optimizer(self.model, self.tcfg)
        self.scheduler = make_scheduler(self.optimizer, self.tcfg)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.tcfg["label_smoothing"])
        self.generator = torch.Generator().manual_seed(self.tcfg["seed"])
        # The epoch permutation: one generator with the seed, identical on every rank. In one process it
        # is the augmentation generator itself; under torchrun each rank draws its augmentations,
        # triplets and dropout from a seed of its own instead.
        self.order_generator = self.generator
        self.net = Objective(self.model, self.loss_fn)
        self.shards: list[list[int]] = []  # under torchrun: this rank's training clips (indices), per epoch
        if self.dist.enabled:
            self._wrap_distributed()
        self.triplets = TripletSampler(self.train_part.labels, self.generator) \
            if getattr(self.model, "triplet_weight", 0) > 0 else None
        self.amp = self.device.type == "cuda" and self.tcfg.get("amp", True)
        self.best = {"val_accuracy": -1.0, "val_loss": float("nan"), "epoch": 0}
        self.best_state, self.start_epoch = None, 1
        self.info = feature_info(input_paths(cfg["inputs"]), model_inputs(cfg["architecture"], cfg.get("args", {})))

    def _wrap_distributed(self) -> None:
        rank_seed = int(np.random.SeedSequence([self.tcfg["seed"], self.dist.rank]).generate_state(1)[0])
        self.generator = torch.Generator().manual_seed(rank_seed)
        torch.manual_seed(rank_seed)
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: some models never use a few parameters in training (fusion_concat's
        # sub-model heads), whose gradients DDP would otherwise wait for forever.
        self.net = DistributedDataParallel(self.net, device_ids=[self.device.index] if self.device.type == "cuda"
                                           else None, find_unused_parameters=True)

    def training_view(self) -> dict[str, torch.Tensor]:
        """The training clips standardised as the training mode says (new draws each call in `enrolment`)."""
        part = self.train_part
        return as_tensors(self.norm.training_view(part.inputs, part.actors, self.mode, self.view_rng))

    def last_path(self) -> Path:
        path = Path(self.cfg["checkpoint"])
        return path.parent / "last" / f"{path.stem}.last.pt"

    def state(self, epoch: int) -> dict:
        part = self.train_part  # what predict's model_info reports (and warns about when small)
        extra = {"training_data": {"actors": sorted(int(a) for a in np.unique(part.actors)),
                                   "clips": int(len(part.labels))}}
        if self.dist.enabled:
            extra["distributed"] = {"world_size": self.dist.world_size, "backend": self.dist.backend}
        return checkpoint_dict(self.model, self.optimizer, self.scheduler, epoch, self.result_config(), self.norm,
                               self.mode, self.shapes, self.info, extra)

    def result_config(self) -> dict:
        """The configuration that determines the result (runtime choices such as the device left out)."""
        return {k: v for k, v in self.cfg.items() if k != "runtime"}

    def resume(self) -> None:
        """Continue an interrupted run from its last checkpoint when the configuration is unchanged
        (and, under torchrun, the number of processes; every rank reads the same file)."""
        self._resume()
        if self.dist.enabled and self.runtime.get("resume"):
            starts = self.dist.gather(self.start_epoch)
            if len(set(starts)) > 1:
                raise ParamError(f"runtime.resume: the ranks found different last checkpoints (next epochs {starts}); "
                                 f"{self.last_path().parent} must be on a file system every node sees")

    def _resume(self) -> None:
        path = self.last_path()
        if not (self.runtime.get("resume") and path.exists()):
            return
        saved = load_checkpoint_file(path, self.device)
        if saved["config"] != self.result_config():
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
        self.view_rng.bit_generator.state = saved["view_rng"]
        self.start_epoch = saved["epoch"] + 1
        print(f"{path}: resuming after epoch {saved['epoch']}")

    def save_last(self, epoch: int) -> None:
        """Every epoch: what `resume` continues from (written by rank 0 only)."""
        extra = {"view_rng": self.view_rng.bit_generator.state}
        if self.dist.enabled:  # every rank's generator, gathered before rank 0 writes
            extra.update(world_size=self.dist.world_size, order_generator=self.order_generator.get_state(),
                         rank_generators=self.dist.gather(self.generator.get_state()))
        if self.dist.main:
            save({**self.state(epoch), "best": self.best, "best_state": self.best_state,
                  "generator": self.generator.get_state(), **extra}, self.last_path())

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
        if self.mode == "enrolment":
            self.train_x = self.training_view()
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

    def step_scheduler(self, val_acc: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_acc)
        elif self.scheduler is not None:
            self.scheduler.step()

    def fit(self) -> dict:
        self.resume()
        epoch, stale = self.start_epoch - 1, 0
        for epoch in tqdm(range(self.start_epoch, self.tcfg["epochs"] + 1), desc=f"train {self.cfg['model']}",
                          unit="epoch", disable=not self.dist.main):
            train_loss = self.train_epoch()
            val_acc, val_loss = self.validated()
            self.step_scheduler(val_acc)
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
            save(self.best_state, self.cfg["checkpoint"])
        return self.metrics(epoch)

    def metrics(self, epoch: int) -> dict:
        metrics = {"best_epoch": self.best["epoch"], "epochs_run": epoch, "protocol": self.protocol,
                   "normalization": self.mode, "val_accuracy": round(self.best["val_accuracy"], 4),
                   "val_loss": round(self.best["val_loss"], 4), "train_clips": len(self.train_y),
                   "val_clips": len(self.val_y), "excluded_clips": len(self.data.excluded), "device": str(self.device)}
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
    """Train one model from `cfg` (model, architecture, args, train, split, inputs (the stage outputs it
    reads: data/features/NAME, data/faces), metadata, checkpoint; optional runtime: device, resume); keep the epoch with the best validation accuracy.
    Returns validation metrics.

    Under torchrun, every process calls this; `rank_report` (a directory) then receives one
    `rank<R>.json` per process with its metrics and the clips it trained on in each epoch."""
    trainer = Trainer(cfg, live)
    try:
        metrics = trainer.fit()
        if rank_report is not None and trainer.dist.enabled:
            from ..io import write_json

            shards = [[str(trainer.train_part.clips[i]) for i in shard] for shard in trainer.shards]
            write_json(Path(rank_report) / f"rank{trainer.dist.rank}.json", {**metrics, "clips": shards})
        return metrics
    finally:
        trainer.close()
