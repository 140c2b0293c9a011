"""Test-set metrics of a trained model: WA, UA, macro-F1, per-class scores, confusion matrix."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

from .ids import EMOTIONS
from .io import atomic_path, write_json


def classification_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict:
    classes = list(range(len(EMOTIONS)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                     zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(labels, predicted)), 4),
        "macro_f1": round(float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)), 4),
        "n": int(len(labels)),
        "per_class": {EMOTIONS[c]: {"precision": round(float(precision[c]), 4), "recall": round(float(recall[c]), 4),
                                    "f1": round(float(f1[c]), 4), "support": int(support[c])} for c in classes},
    }


def breakdowns(clips, labels: np.ndarray, predicted: np.ndarray, metadata: Path) -> dict:
    """Test accuracy by gender and by intensity (per emotion is in `per_class`)."""
    from .metadata import read_metadata

    meta = read_metadata(metadata).set_index("clip_id").loc[list(clips)]
    correct = labels == predicted
    return {f"by_{column}": {str(value): {"accuracy": round(float(correct[(meta[column] == value).to_numpy()].mean()), 4),
                                          "n": int((meta[column] == value).sum())}
                             for value in sorted(meta[column].unique())}
            for column in ("gender", "intensity")}


def evaluate_checkpoint(checkpoint: Path, metrics: Path, plots: Path) -> dict:
    """Test-split metrics of a checkpoint written by `train`: JSON for `dvc metrics`, confusion CSV and PNG."""
    from .train import load_checkpoint, predict_proba, prepare

    model, normalizer, state = load_checkpoint(checkpoint)
    cfg = state["config"]
    _, parts = prepare(cfg)
    test = parts["test"]
    predicted = predict_proba(model, normalizer.tensors(test), "cpu").argmax(1)
    result = {"model": cfg["model"], **classification_metrics(test.labels, predicted),
              **breakdowns(test.clips, test.labels, predicted, Path(cfg["metadata"])),
              "best_epoch": state["epoch"], "weights": state["feature_info"]["weights"],
              "test_actors": sorted(set(int(a) for a in test.actors))}
    write_json(metrics, result)
    write_confusion(test.labels, predicted, plots / "confusion.csv", plots / "confusion.png",
                    f"{cfg['model']}: WA {result['accuracy']:.2f}, UA {result['balanced_accuracy']:.2f}")
    return result


def write_confusion(labels: np.ndarray, predicted: np.ndarray, csv_path: Path, png_path: Path, title: str) -> None:
    """Rows (actual, predicted) for DVC's confusion template, and a PNG of the matrix."""
    frame = pd.DataFrame({"actual": [EMOTIONS[i] for i in labels], "predicted": [EMOTIONS[i] for i in predicted]})
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(labels, predicted, labels=list(range(len(EMOTIONS))))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
