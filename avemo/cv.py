"""Speaker-independent k-fold cross-validation by actor: fold lists of the literature by name, validation
actors drawn from each fold's training actors, and the mean +- std summary over folds."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .io import choice, read_json, write_json
from .errors import ParamError

# Test actors of each fold (1-based actor ids). Every list covers actors 1-24 once.
FOLD_SCHEMES: dict[str, list[list[int]]] = {
    # 6 folds of 4 consecutive actors (balanced: 2 male, 2 female per fold).
    "sequential_6x4": [list(range(start, start + 4)) for start in range(1, 25, 4)],
    # Luna-Jimenez et al., Sensors 2021 / Applied Sciences 2022 (5-fold, their repository's lists,
    # converted from its 0-based to RAVDESS's 1-based actor ids).
    "luna_jimenez_5fold": [[2, 5, 14, 15, 16], [3, 6, 7, 13, 18], [10, 11, 12, 19, 20], [8, 17, 21, 23, 24],
                           [1, 4, 9, 22]],
    # One actor per fold: 24 folds.
    "leave_one_actor_out": [[actor] for actor in range(1, 25)],
}


def scheme_folds(scheme: str) -> list[list[int]]:
    choice(scheme, FOLD_SCHEMES, "cv.scheme")
    return FOLD_SCHEMES[scheme]


def check_fold(scheme: str, fold: int) -> list[int]:
    """The test actors of `fold`; a fold outside the scheme names the valid ones."""
    folds = scheme_folds(scheme)
    if not 0 <= int(fold) < len(folds):
        raise ParamError(f"cv.folds: fold {fold} does not exist in scheme {scheme} ({len(folds)} folds: "
                         f"set cv.folds to {list(range(len(folds)))})")
    return folds[int(fold)]


def pick_val_actors(candidates: list[int], count: int, seed: int) -> list[int]:
    """`count` validation actors among the fold's training actors, half male (odd ids) half female, drawn
    with a fixed seed; at least one actor is always left for training."""
    count = min(int(count), len(candidates) - 1)
    if count < 1:
        raise ParamError(f"cv.val_actors: {len(candidates)} training actor(s) {candidates} leave none for validation")
    rng = np.random.default_rng(seed)
    male = list(rng.permutation([a for a in candidates if a % 2 == 1]))
    female = list(rng.permutation([a for a in candidates if a % 2 == 0]))
    picked = []
    while len(picked) < count:  # alternate male / female while both remain
        for group in (male, female):
            if group and len(picked) < count:
                picked.append(int(group.pop(0)))
    return sorted(picked)


def fold_split(scheme: str, fold: int, actors, val_actors: int, seed: int) -> dict | None:
    """{'test_actors', 'val_actors'} of one fold over the actors present in the data, or None when none of
    the fold's test actors is present (the fold is then reported as skipped)."""
    present = sorted(set(int(a) for a in actors))
    test = [a for a in check_fold(scheme, fold) if a in present]
    if not test:
        return None
    rest = [a for a in present if a not in test]
    return {"test_actors": test, "val_actors": pick_val_actors(rest, val_actors, seed + int(fold))}


def run_fold(params: dict, model: str, fold: int, paths: dict, out: Path, metrics: Path) -> dict:
    """Train `model` on one fold (checkpoint in `out`), evaluate it on the fold's test actors; write the
    fold's metrics. A fold without any of its test actors in the data is recorded as skipped."""
    from .config import model_config
    from .evaluate import evaluate_checkpoint
    from .metadata import read_metadata
    from .train import train

    cv = params["cv"]
    scheme = cv["scheme"]
    split = fold_split(scheme, fold, read_metadata(Path(paths["metadata"]))["actor"], cv["val_actors"], cv["seed"])
    info = {"model": model, "scheme": scheme, "fold": int(fold), "fold_actors": check_fold(scheme, fold)}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if split is None:
        result = {**info, "skipped": f"none of the fold's test actors {info['fold_actors']} is in the data"}
        write_json(out / "fold.json", result)
        write_json(metrics, result)
        return result
    cfg = model_config(params, model, **paths, checkpoint=str(out / "model.pt"))
    cfg["split"] = split
    fit = train(cfg)
    shutil.rmtree(out / "last", ignore_errors=True)  # the per-epoch resume file is not a result
    result = evaluate_checkpoint(out / "model.pt", metrics, out / "plots",
                                 extra={**info, **split, "val_accuracy": fit["val_accuracy"]})
    write_json(out / "fold.json", {**info, **split, "train": fit})
    return result


SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")


def mean_std(values) -> dict:
    values = np.asarray(list(values), dtype=float)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=0)), 4)}


def summarize(fold_metrics: list[dict]) -> dict:
    """Mean +- std over the folds that ran of WA, UA, macro-F1, per-emotion recall/F1, and accuracy by
    gender and by intensity; skipped folds are listed with their reason."""
    ran = [m for m in fold_metrics if "skipped" not in m]
    if not ran:
        raise ParamError("cv: no fold could run (" + "; ".join(m["skipped"] for m in fold_metrics) + ")")
    first = ran[0]
    summary = {"model": first["model"], "scheme": first["scheme"], "folds": len(ran),
               "folds_run": [m["fold"] for m in ran],
               "folds_skipped": {str(m["fold"]): m["skipped"] for m in fold_metrics if "skipped" in m},
               "test_clips": int(sum(m["n"] for m in ran))}
    summary.update({key: mean_std(m[key] for m in ran) for key in SUMMARY_KEYS})
    summary["per_class"] = {emotion: {score: mean_std(m["per_class"][emotion][score] for m in ran)
                                      for score in ("recall", "f1")} for emotion in first["per_class"]}
    for group in ("by_gender", "by_intensity"):
        values = sorted({v for m in ran for v in m[group]})
        summary[group] = {v: mean_std(m[group][v]["accuracy"] for m in ran if v in m[group]) for v in values}
    summary["per_fold"] = {str(m["fold"]): {key: m[key] for key in SUMMARY_KEYS} | {"test_actors": m["test_actors"]}
                           for m in ran}
    return summary


def summarize_dir(folds_dir: Path, out: Path) -> dict:
    files = sorted(Path(folds_dir).glob("fold*.json"), key=lambda p: int(p.stem[4:]))
    if not files:
        raise ParamError(f"{folds_dir}: no fold metrics (fold*.json); run the cv stages first")
    summary = summarize([read_json(p) for p in files])
    write_json(out, summary)
    return summary


def table(cv_dir: str | Path = "metrics/cv") -> str:
    """Markdown table of every model's cross-validation summary (mean +- std over folds)."""
    rows = ["| model | scheme | folds | WA | UA | macro-F1 | test clips |", "|---|---|---|---|---|---|---|"]
    for path in sorted(Path(cv_dir).glob("*.json")):
        s = read_json(path)
        cell = lambda key: f"{s[key]['mean']:.3f} ± {s[key]['std']:.3f}"  # noqa: E731
        rows.append(f"| {s['model']} | {s['scheme']} | {s['folds']} | {cell('accuracy')} "
                    f"| {cell('balanced_accuracy')} | {cell('macro_f1')} | {s['test_clips']} |")
    return "\n".join(rows)
