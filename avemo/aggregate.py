"""Clip-level decisions from frame-level (or window-level) class probabilities."""
from __future__ import annotations

import numpy as np

AGGREGATIONS = ("sum", "vote")


def aggregate(frame_probs: np.ndarray, method: str = "sum") -> np.ndarray:
    """(frames, classes) probabilities -> (classes,) clip scores summing to 1.

    sum:  normalised sum of the frame probabilities.
    vote: each frame votes for its most probable class; ties between the most-voted classes are broken
          by the probability sum (the winner gets the highest score, the sum orders the rest)."""
    frame_probs = np.asarray(frame_probs, dtype=np.float64)
    total = frame_probs.sum(axis=0)
    if method == "sum":
        return total / total.sum()
    if method != "vote":
        raise ValueError(f"aggregation '{method}' is not valid; choose one of: {', '.join(AGGREGATIONS)}")
    votes = np.bincount(frame_probs.argmax(axis=1), minlength=frame_probs.shape[1]).astype(np.float64)
    score = votes + total / (total.sum() + 1.0)  # the sum term is < 1: it only orders equal vote counts
    return score / score.sum()
