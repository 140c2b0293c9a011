"""Calibrated confidence: temperature scaling fitted on validation actors, the expected calibration error
(ECE) and a reliability diagram."""
from __future__ import annotations

from pathlib import Path

import numpy as np

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017)
T_RANGE = (0.05, 20.0)  # temperatures searched; beyond them a model is degenerate, not miscalibrated


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) row by row."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of `labels` (one scalar, so the arg-max and
    the accuracy are unchanged)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=int)
    result = minimize_scalar(lambda log_t: nll(scaled(probs, np.exp(log_t)), labels),
                             bounds=tuple(np.log(T_RANGE)), method="bounded")
    return round(float(np.exp(result.x)), 4)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per equal-width bin of top-label confidence: clips, mean confidence, accuracy; and the ECE (the
    clip-weighted mean of |accuracy - confidence| over the bins)."""
    probs, labels = np.asarray(probs), np.asarray(labels, dtype=int)
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        members = index == b
        if not members.any():
            continue
        conf, acc = float(confidence[members].mean()), float(correct[members].mean())
        ece += members.sum() / len(labels) * abs(acc - conf)
        rows.append({"bin": [b / bins, (b + 1) / bins], "clips": int(members.sum()),
                     "confidence": round(conf, 4), "accuracy": round(acc, 4)})
    return {"ece": round(float(ece), 4), "bins": rows, "clips": int(len(labels))}


def reliability_diagram(curves: dict[str, dict], path: str | Path, title: str) -> None:
    """One panel per curve name (e.g. 'before' / 'after'): accuracy against confidence per bin, bar width
    the bin, the diagonal for perfect calibration, the ECE in the legend. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 4.2), squeeze=False)
    for ax, (name, curve) in zip(axes[0], curves.items()):
        lefts = [r["bin"][0] for r in curve["bins"]]
        width = curve["bins"][0]["bin"][1] - curve["bins"][0]["bin"][0] if curve["bins"] else 0.1
        ax.bar(lefts, [r["accuracy"] for r in curve["bins"]], width=width, align="edge", edgecolor="black",
               color="#4c72b0", label=f"accuracy (ECE {curve['ece']:.3f})")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ax.plot([r["bin"][0] + width / 2 for r in curve["bins"]], [r["confidence"] for r in curve["bins"]], "_",
                color="#dd8452", markersize=14, markeredgewidth=2, label="mean confidence of the bin")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=name)
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
