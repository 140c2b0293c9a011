"""A model's clips: its inputs loaded and split by actor, and their standardisation under a protocol."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import FeatureSet, input_paths, load_feature_set, select_gender, split_feature_set
from ..io import choice
from ..models import model_inputs
from ..normalize import ProtocolNormalizer
from ..protocols import PROTOCOLS, SINGLE_CLIP


def prepare(cfg: dict) -> tuple[FeatureSet, dict[str, FeatureSet]]:
    """Load the inputs the model declares, keep its gender if gender-specific, split train/val/test by actor."""
    needs = model_inputs(cfg["architecture"], cfg.get("args", {}))
    data = load_feature_set(input_paths(cfg["inputs"]), Path(cfg["metadata"]), needs)
    data = select_gender(data, cfg["train"].get("gender", "all"))
    return data, split_feature_set(data, cfg["split"])


def protocol_inputs(norm: ProtocolNormalizer, part: FeatureSet, protocol: str, k: int | None = None,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """`part`'s inputs as a model sees them under `protocol`: single_clip (training statistics only) or
    speaker_adapted (statistics of k other clips of the same person, all of them when k is None)."""
    choice(protocol, PROTOCOLS, "protocol")
    if protocol == SINGLE_CLIP:
        return norm.single_clip(part.inputs)
    return norm.speaker_adapted(part.inputs, part.actors, k, seed)
