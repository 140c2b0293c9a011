"""Training: `train(cfg) -> metrics` (loop), checkpoints, inference, augmentation, DDP, optimisers.
Names load lazily: predict reads checkpoints and runs inference without the training loop's imports."""
from importlib import import_module

_NAMES = {"load_checkpoint": "checkpoint", "as_tensors": "inference", "predict_proba": "inference",
          "Trainer": "loop", "train": "loop"}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'avemo.training' has no attribute '{name}'")
    value = getattr(import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value
