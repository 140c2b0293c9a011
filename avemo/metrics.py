"""Metrics shared by models, baselines and the ensemble: WA, UA, macro-F1, per-class scores, breakdowns by
gender and intensity, both protocols and the enrolment curve; predictions files and confusion matrices."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

from .ids import EMOTIONS
from .io import atomic_path
from .protocols import PROTOCOLS, SINGLE_CLIP, SPEAKER_ADAPTED


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


def metrics_report(model: str, clips, labels: np.ndarray, predicted: np.ndarray, metadata: Path) -> dict:
    """The metric fields every `metrics/<model>.json` shares (WA, UA, macro-F1, per class, by gender, by
    intensity), for the neural models' `evaluate` and the classical baselines alike."""
    return {"model": model, **classification_metrics(labels, predicted),
            **breakdowns(clips, labels, predicted, metadata)}


ENROLMENT_SEEDS = 3  # random draws of the k enrolment clips per point of the curve


def protocol_probabilities(predict, norm, part, curve: bool = True) -> dict:
    """Class probabilities of `part`'s clips under single_clip and speaker_adapted (all other clips of
    the person), and per enrolment size k the probabilities of ENROLMENT_SEEDS random draws of k clips.
    `predict(inputs, protocol) -> probabilities` (a classifier may weigh its parts per protocol)."""
    from .normalize import ENROLMENT_SIZES

    out = {SINGLE_CLIP: predict(norm.single_clip(part.inputs), SINGLE_CLIP),
           SPEAKER_ADAPTED: predict(norm.speaker_adapted(part.inputs, part.actors), SPEAKER_ADAPTED)}
    if curve and norm.prior:
        out["enrolment"] = {k: [predict(norm.speaker_adapted(part.inputs, part.actors, k, seed), SPEAKER_ADAPTED)
                                for seed in range(ENROLMENT_SEEDS)] for k in ENROLMENT_SIZES}
    return out


def enrolment_curve(draws: dict, labels: np.ndarray, all_others: np.ndarray) -> dict:
    """Accuracy (WA, UA; mean over the random draws) per number of enrolment clips k, and with all of them."""
    curve = {str(k): {"accuracy": round(float(np.mean([accuracy_score(labels, p.argmax(1)) for p in probs])), 4),
                      "balanced_accuracy": round(float(np.mean([balanced_accuracy_score(labels, p.argmax(1))
                                                                for p in probs])), 4)}
             for k, probs in draws.items()}
    curve["all"] = {"accuracy": round(float(accuracy_score(labels, all_others.argmax(1))), 4),
                    "balanced_accuracy": round(float(balanced_accuracy_score(labels, all_others.argmax(1))), 4)}
    return curve


def protocol_report(model: str, clips, labels: np.ndarray, probs: dict, metadata: Path) -> dict:
    """The metrics file body shared by models, baselines and the ensemble: both protocols, the headline
    named, and the enrolment curve when there is one."""
    report = {"model": model, "protocol": SINGLE_CLIP, "protocols": {
        SINGLE_CLIP: "one clip of an unseen person; statistics of the training actors only",
        SPEAKER_ADAPTED: "statistics of the person's other clips (unlabeled), never the scored clip"}}
    for protocol in PROTOCOLS:
        report[protocol] = metrics_report(model, clips, labels, probs[protocol].argmax(1), metadata)
        report[protocol].pop("model")
    if "enrolment" in probs:
        report["enrolment_curve"] = enrolment_curve(probs["enrolment"], labels, probs[SPEAKER_ADAPTED])
    return report


# Columns of a predictions file: one probability per class, in the order of EMOTIONS (label indices).
PROBABILITY_COLUMNS = tuple(f"p_{emotion}" for emotion in EMOTIONS)


def write_predictions(path: Path, splits: dict) -> None:
    """Per-clip class probabilities as CSV, one row per clip and protocol: `clip, split, protocol,
    p_neutral ... p_surprised, label` (label: the true emotion's name). `splits` maps (split, protocol)
    to (clips, label indices, probabilities [clips x classes]). The one writer of the neural models'
    `evaluate`, the classical `baselines` and the `ensemble` stage, so that any of them can be an
    ensemble member."""
    frames = []
    for (split, protocol), (clips, labels, probs) in splits.items():
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (len(clips), len(EMOTIONS)) or len(labels) != len(clips):
            raise ValueError(f"{path}: split {split}: {len(clips)} clips, {len(labels)} labels and probabilities "
                             f"of shape {probs.shape}; expected ({len(clips)}, {len(EMOTIONS)})")
        frame = pd.DataFrame(probs, columns=list(PROBABILITY_COLUMNS))
        frame.insert(0, "protocol", protocol)
        frame.insert(0, "split", split)
        frame.insert(0, "clip", [str(c) for c in clips])
        frame["label"] = [EMOTIONS[int(i)] for i in labels]
        frames.append(frame)
    with atomic_path(path) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False, float_format="%.7g")


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
