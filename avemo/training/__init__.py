"""Training: `train(cfg) -> metrics` (loop), checkpoints, inference, augmentation, DDP, optimisers."""
from .checkpoint import load_checkpoint
from .inference import as_tensors, predict_proba
from .loop import Trainer, train

__all__ = ["Trainer", "as_tensors", "load_checkpoint", "predict_proba", "train"]
