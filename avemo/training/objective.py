"""The training loss as one module call (what DistributedDataParallel wraps under torchrun)."""
from __future__ import annotations

import torch
from torch import nn


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
