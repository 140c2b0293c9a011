"""Class probabilities of a model on a dict of input tensors, in evaluation mode, batch by batch."""
from __future__ import annotations

import numpy as np
import torch


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def as_tensors(inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """numpy inputs -> tensors: uint8 face crops as they are, everything else float32."""
    return {k: torch.from_numpy(np.ascontiguousarray(v if v.dtype == np.uint8 else v.astype(np.float32)))
            for k, v in inputs.items()}


@torch.no_grad()
def predict_proba(model: torch.nn.Module, tensors: dict, device: torch.device | str, batch_size: int = 64) -> np.ndarray:
    """Class probabilities in evaluation mode (no augmentation), batch by batch."""
    model.eval()
    count = len(next(iter(tensors.values())))
    probs = [torch.softmax(model(to_device({k: v[i:i + batch_size] for k, v in tensors.items()}, device)).float(), 1).cpu()
             for i in range(0, count, batch_size)]
    return torch.cat(probs).numpy()
