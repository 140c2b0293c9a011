"""Late fusion of whole classifiers: each branch (any model of this registry) gives class
log-probabilities, fused by a weighted sum (a weighted product of the branches' distributions)."""
from __future__ import annotations

import torch
from torch import nn

from ..io import choice
from .blocks import Classifier
from .registry import build_model, model_inputs, register

FUSION_WEIGHTS = ("learned", "equal")


@register("late_fusion")
class LateFusion(Classifier):
    """Branches, e.g. a linear classifier on pooled Whisper states (audio) and one on pooled FER2013 +
    ImageNet face features (video), each trained on its own loss (weight `branch_loss`) and on the
    fused output's, so that every branch remains a classifier by itself. `weights: learned` fits the
    fusion weights (softmax over branches) with the rest, `equal` keeps them equal."""

    def __init__(self, shapes: dict, branches: dict, weights: str = "learned", branch_loss: float = 1.0):
        super().__init__()
        self.branches = nn.ModuleDict({name: build_model(spec["model"], shapes, spec.get("args", {}))
                                       for name, spec in branches.items()})
        self.learned = choice(weights, FUSION_WEIGHTS, "args.weights") == "learned"
        self.fusion = nn.Parameter(torch.zeros(len(branches)), requires_grad=self.learned)
        self.branch_loss = branch_loss
        self.latent_size = sum(branch.latent_size for branch in self.branches.values())

    @staticmethod
    def input_names(args: dict) -> tuple[str, ...]:
        names = [n for spec in args["branches"].values() for n in model_inputs(spec["model"], spec.get("args", {}))]
        return tuple(dict.fromkeys(names))

    def branch_logits(self, batch: dict) -> torch.Tensor:
        return torch.stack([branch(batch) for branch in self.branches.values()], dim=1)  # (B, branches, C)

    def fuse(self, logits: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.fusion, dim=0)
        return (weights[None, :, None] * torch.log_softmax(logits, dim=-1)).sum(dim=1)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.fuse(self.branch_logits(batch))

    def encode(self, batch: dict) -> torch.Tensor:
        return torch.cat([branch.encode(batch) for branch in self.branches.values()], dim=1)

    def loss(self, batch: dict, labels: torch.Tensor, loss_fn) -> torch.Tensor:
        logits = self.branch_logits(batch)
        own = torch.stack([loss_fn(logits[:, i], labels) for i in range(logits.shape[1])]).mean()
        return loss_fn(self.fuse(logits), labels) + self.branch_loss * own

    def fusion_weights(self) -> dict[str, float]:
        return dict(zip(self.branches, torch.softmax(self.fusion.detach(), dim=0).tolist()))
