"""Late-fusion ensemble of trained models and classical baselines, chosen on the validation actors only.

Every member is a predictions file (`metrics/predictions/<name>.csv`, written by `evaluate` and
`baselines` through `avemo.evaluate.write_predictions`): per clip of the validation and test actors, the
8 class probabilities. The ensemble is a weighted arithmetic mean of the members' probabilities (a
linear opinion pool: a convex combination, so it is again a distribution, and one member that is
confidently wrong cannot veto the others as it would in a product / mean of log-probabilities).

`greedy` is ensemble selection (Caruana, Niculescu-Mizil, Crew & Ksikes, ICML 2004) with replacement:
start from the empty ensemble, at each step add the candidate (again, if it is already in) whose
addition gives the best validation score, for `max_members` steps; the ensemble returned is the step
with the best validation score (the earliest on a tie), each member weighted by how often it was added.
`mean` averages all candidates with equal weights. Selection reads the validation rows only: the test
rows are scored once, with the chosen weights, for the metrics file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import PROBABILITY_COLUMNS, classification_metrics, metrics_report, write_confusion
from .ids import EMOTIONS
from .io import choice, write_json
from .errors import ParamError, StageError
from .protocols import PROTOCOLS, SINGLE_CLIP

METHODS = ("greedy", "mean")
CRITERIA = ("log_likelihood", "accuracy")
SPLITS = ("val", "test")
# Probabilities are floored here before the logarithm, so that one clip given 0 by a member (a class
# absent from a baseline's training clips) costs a large finite penalty instead of -inf.
EPS = 1e-6


@dataclass
class Split:
    """One split's clips, label indices and the candidates' probabilities [candidates x clips x classes]."""
    clips: np.ndarray
    labels: np.ndarray
    probs: np.ndarray


def read_predictions(path: Path) -> pd.DataFrame:
    """A predictions file, checked: the columns of `write_predictions`, known emotion labels, finite
    probabilities that sum to 1 per row (to 1e-3: the file keeps 7 significant digits)."""
    try:
        frame = pd.read_csv(path, dtype={"clip": str, "split": str, "label": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise StageError(f"{path}: cannot be read as a predictions CSV ({err})") from None
    expected = ["clip", "split", "protocol", *PROBABILITY_COLUMNS, "label"]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise StageError(f"{path}: not a predictions file; missing columns {', '.join(missing)} "
                         f"(expected {', '.join(expected)})")
    unknown = sorted(set(frame["label"]) - set(EMOTIONS))
    if unknown:
        raise StageError(f"{path}: unknown labels {unknown}; expected one of {', '.join(EMOTIONS)}")
    probs = frame[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64)
    sums = probs.sum(axis=1)
    if not np.isfinite(probs).all() or (probs < 0).any() or (np.abs(sums - 1) > 1e-3).any():
        bad = int((~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) | (np.abs(sums - 1) > 1e-3)).sum())
        raise StageError(f"{path}: {bad} row(s) whose probabilities are not a distribution (finite, >= 0, sum 1)")
    twice = frame.duplicated(["clip", "split", "protocol"])
    if twice.any():
        raise StageError(f"{path}: clip listed twice in one split and protocol: {frame[twice].iloc[0]['clip']}")
    return frame


def load_candidates(directory: Path, names: list) -> dict[str, pd.DataFrame]:
    """Each candidate's predictions file `directory/<name>.csv`; a missing one stops with the file named
    and the candidates that do have one."""
    directory = Path(directory)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ParamError(f"ensemble.candidates: {names!r}; give a non-empty list of model or baseline names "
                         f"(file names of {directory}/<name>.csv)")
    if len(set(names)) != len(names):
        raise ParamError(f"ensemble.candidates: {sorted({n for n in names if names.count(n) > 1})} listed twice")
    available = sorted(p.stem for p in directory.glob("*.csv"))
    tables = {}
    for name in names:
        path = directory / f"{name}.csv"
        if not path.is_file():
            raise ParamError(f"ensemble.candidates: '{name}' has no predictions file {path} (written by the "
                             f"evaluate@MODEL and baselines@FEATURES-CLASSIFIER stages); valid names: "
                             f"{', '.join(available) if available else f'none, {directory} holds no predictions'}")
        tables[name] = read_predictions(path)
    return tables


def align(tables: dict[str, pd.DataFrame], protocol: str = SINGLE_CLIP) -> tuple[dict[str, Split], dict[str, int]]:
    """Per split, the clips every candidate scored under `protocol` (a model on a subset of clips, e.g. one
    gender, shrinks them: the number dropped is returned), in one order, with labels that must agree."""
    names = list(tables)
    splits, dropped = {}, {}
    for split in SPLITS:
        parts = {n: t[(t["split"] == split) & (t["protocol"] == protocol)].set_index("clip") for n, t in tables.items()}
        union = set().union(*(p.index for p in parts.values()))
        common = sorted(set.intersection(*(set(p.index) for p in parts.values())))
        dropped[split] = len(union) - len(common)
        if not common:
            raise StageError(f"ensemble: no {split} clip is scored by every candidate "
                             f"({', '.join(f'{n}: {len(p)}' for n, p in parts.items())} {split} clips)")
        labels = parts[names[0]].loc[common, "label"]
        for name in names[1:]:
            differ = (parts[name].loc[common, "label"] != labels).to_numpy()
            if differ.any():
                raise StageError(f"ensemble: {name} and {names[0]} give clip {np.array(common)[differ][0]} "
                                 f"different labels; their predictions come from different metadata")
        probs = np.stack([parts[n].loc[common, list(PROBABILITY_COLUMNS)].to_numpy(np.float64) for n in names])
        splits[split] = Split(np.array(common), np.array([EMOTIONS.index(x) for x in labels]), probs)
    return splits, dropped


def combine(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted arithmetic mean of the candidates' probabilities [candidates x clips x classes] ->
    [clips x classes]; the weights are normalised to sum to 1, so every row is a distribution."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != probs.shape[:1] or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"weights {weights} for {probs.shape[0]} candidates: give one non-negative weight each, not all 0")
    mixed = np.tensordot(weights / weights.sum(), probs, axes=1)
    return mixed / mixed.sum(axis=1, keepdims=True)


def scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy and mean log-likelihood (mean log-probability of the true class) of [clips x classes]."""
    picked = probs[np.arange(len(labels)), labels]
    return {"accuracy": float((probs.argmax(1) == labels).mean()),
            "log_likelihood": float(np.log(np.maximum(picked, EPS)).mean())}


def greedy_select(val_probs: np.ndarray, val_labels: np.ndarray, max_members: int,
                  criterion: str = "log_likelihood") -> tuple[np.ndarray, list[dict]]:
    """Caruana et al.'s ensemble selection with replacement on the validation clips only.

    Returns (counts per candidate of the best step, the steps: candidate index added and the validation
    scores after it). Each step adds the candidate maximising `criterion`, the other score breaking ties,
    then the lowest index; the ensemble kept is the step with the best `criterion` (the earliest on a tie,
    so the smallest ensemble)."""
    choice(criterion, CRITERIA, "ensemble.criterion")
    other = next(c for c in CRITERIA if c != criterion)
    if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 1:
        raise ParamError(f"ensemble.max_members: {max_members!r}; give a whole number of at least 1")
    n = val_probs.shape[0]
    counts = np.zeros(n, dtype=int)
    total = np.zeros(val_probs.shape[1:])
    steps, best_step, best_counts = [], None, None
    for step in range(max_members):
        trials = []
        for i in range(n):
            s = scores((total + val_probs[i]) / (step + 1), val_labels)
            trials.append((s[criterion], s[other], -i))
        _, _, neg = max(trials)
        added = -neg
        counts[added] += 1
        total += val_probs[added]
        s = scores(total / (step + 1), val_labels)
        steps.append({"step": step + 1, "added": added, **{k: round(v, 4) for k, v in s.items()}})
        # a later step must beat the best by more than rounding (a repeated mixture scores the same)
        if best_step is None or s[criterion] > best_step[criterion] + 1e-9:
            best_step, best_counts = s, counts.copy()
    return best_counts, steps


def select(cfg: dict, names: list[str], val: Split) -> tuple[np.ndarray, list]:
    """Member counts (weights = counts / total) and the greedy steps, from the validation clips only."""
    method = choice(cfg.get("method"), METHODS, "ensemble.method")
    criterion = choice(cfg.get("criterion", "log_likelihood"), CRITERIA, "ensemble.criterion")
    if method == "mean":
        return np.ones(len(names), dtype=int), []
    counts, steps = greedy_select(val.probs, val.labels, cfg.get("max_members"), criterion)
    return counts, [{**s, "added": names[s["added"]]} for s in steps]


def run_protocol(cfg: dict, names: list[str], tables: dict, protocol: str, metadata: Path):
    """Members and weights chosen on the validation clips under `protocol`; the test clips' metrics."""
    splits, dropped = align(tables, protocol)
    val, test = splits["val"], splits["test"]
    for split, count in dropped.items():
        if count:
            print(f"warning: ensemble ({protocol}): {count} {split} clip(s) left out, not scored by every candidate")
    counts, steps = select(cfg, names, val)
    weights = counts / counts.sum()
    val_mix, test_mix = combine(val.probs, weights), combine(test.probs, weights)
    val_scores = classification_metrics(val.labels, val_mix.argmax(1))
    report = metrics_report("ensemble", test.clips, test.labels, test_mix.argmax(1), Path(metadata))
    report.pop("model")
    report.update({
        "members": {names[i]: round(float(weights[i]), 4) for i in np.argsort(-counts, kind="stable") if counts[i]},
        "val": {**{k: val_scores[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "n")},
                "log_likelihood": round(scores(val_mix, val.labels)["log_likelihood"], 4)},
        "test_log_likelihood": round(scores(test_mix, test.labels)["log_likelihood"], 4),
        "candidates": {n: {f"val_{k}": round(v, 4) for k, v in scores(val.probs[i], val.labels).items()}
                       for i, n in enumerate(names)},
        "selection": steps, "dropped_clips": dropped})
    return report, test, test_mix


def run_ensemble(cfg: dict, names: list, predictions: Path, metadata: Path, metrics: Path, plots: Path) -> dict:
    """Stage `ensemble`: per protocol, members and weights from the validation clips (`cfg` is params.yaml
    `ensemble`, `names` the candidates of params.yaml `run.ensemble`), test metrics in the format of
    `evaluate` (plus members, weights, validation scores); the single-clip confusion matrix."""
    tables = load_candidates(predictions, names)
    result = {"model": "ensemble", "protocol": SINGLE_CLIP, "method": cfg.get("method"),
              "criterion": cfg.get("criterion", "log_likelihood") if cfg.get("method") == "greedy" else None}
    for protocol in PROTOCOLS:
        result[protocol], test, mix = run_protocol(cfg, list(names), tables, protocol, metadata)
        if protocol == SINGLE_CLIP:
            predicted = mix.argmax(1)
            write_confusion(test.labels, predicted, Path(plots) / "confusion.csv", Path(plots) / "confusion.png",
                            f"ensemble (single clip): WA {result[protocol]['accuracy']:.2f}, "
                            f"UA {result[protocol]['balanced_accuracy']:.2f}")
    from .metadata import read_metadata

    actors = read_metadata(Path(metadata)).set_index("clip_id")["actor"]
    result["test_actors"] = sorted(int(a) for a in actors.loc[list(test.clips)].unique())
    write_json(metrics, result)
    return result
