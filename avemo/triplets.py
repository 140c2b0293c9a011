"""(anchor, positive, negative) sampling for triplet-loss training, within one partition only."""
from __future__ import annotations

import numpy as np
import torch


class TripletSampler:
    """For each anchor index: a positive of the same label (another clip when one exists) and a negative
    of a different label, both drawn from the same index space as the anchors: the training partition,
    so validation and test actors never appear in a triplet."""

    def __init__(self, labels: np.ndarray, generator: torch.Generator):
        self.labels = np.asarray(labels)
        self.generator = generator
        self.by_label = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        if len(self.by_label) < 2:
            raise ValueError("triplets need at least two emotions in the training data")

    def _pick(self, pool: np.ndarray) -> int:
        return int(pool[int(torch.randint(0, len(pool), (1,), generator=self.generator))])

    def sample(self, anchors) -> tuple[np.ndarray, np.ndarray]:
        positives, negatives = [], []
        for anchor in np.asarray(anchors):
            label = int(self.labels[anchor])
            same = self.by_label[label]
            others = same[same != anchor]
            positives.append(self._pick(others if len(others) else same))
            negatives.append(self._pick(np.flatnonzero(self.labels != label)))
        return np.array(positives), np.array(negatives)
