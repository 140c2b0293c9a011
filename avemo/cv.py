"""Speaker-independent k-fold cross-validation by actor: fold lists of the literature by name, validation
actors drawn from each fold's training actors, and the mean +- std summary over folds."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .io import choice, write_json
from .errors import ParamError

# Test actors of each fold (1-based actor ids). Every list covers actors 1-24 once.
FOLD_SCHEMES: dict[str, list[list[int]]] = {
    # 6 folds of 4 consecutive actors (balanced: 2 male, 2 female per fold); HiCMAE's protocol.
    "sequential_6x4": [list(range(start, start + 4)) for start in range(1, 25, 4)],
    # Luna-Jimenez et al., Sensors 2021 / Applied Sciences 2022 (5-fold, their repository's lists,
    # converted from its 0-based to RAVDESS's 1-based actor ids).
    "luna_jimenez_5fold": [[2, 5, 14, 15, 16], [3, 6, 7, 13, 18], [10, 11, 12, 19, 20], [8, 17, 21, 23, 24],
                           [1, 4, 9, 22]],
    # EmoBox (Ma et al., Interspeech 2024), RAVDESS: 6 folds of 4 actors (their repository's lists).
    "emobox_6fold": [[1, 11, 20, 21], [4, 10, 12, 14], [8, 9, 19, 23], [3, 5, 7, 24], [2, 15, 16, 18],
                     [6, 13, 17, 22]],
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


def run_fold(params: dict, name: str, fold: int, inputs: list[str], metadata: Path, out: Path,
             metrics: Path) -> dict:
    """Train and test model or baseline `name` on one fold (checkpoint, predictions and split in `out`),
    under both protocols; write the fold's metrics. A fold without any of its test actors in the data is
    recorded as skipped."""
    from .metadata import read_metadata

    cv = params["cv"]
    scheme = cv["scheme"]
    split = fold_split(scheme, fold, read_metadata(Path(metadata))["actor"], cv["val_actors"], cv["seed"])
    info = {"scheme": scheme, "fold": int(fold), "fold_actors": check_fold(scheme, fold)}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if split is None:
        result = {"model": name, **info, "skipped": f"none of the fold's test actors {info['fold_actors']} is in the data"}
        write_json(out / "fold.json", result)
        write_json(metrics, result)
        return result
    if name in params.get("models", {}):
        result = _model_fold(params, name, split, inputs, metadata, out, metrics, info)
    else:
        result = _baseline_fold(params, name, split, inputs, metadata, out, metrics, info)
    return result


def _model_fold(params, name, split, inputs, metadata, out, metrics, info) -> dict:
    from .config import model_config
    from .evaluate import evaluate_checkpoint
    from .training import train

    cfg = model_config(params, name, inputs=list(inputs), metadata=str(metadata), checkpoint=str(out / "model.pt"))
    cfg["split"] = split
    fit = train(cfg)
    shutil.rmtree(out / "last", ignore_errors=True)  # the per-epoch resume file is not a result
    result = evaluate_checkpoint(out / "model.pt", metrics, out / "plots", predictions=out / "predictions.csv",
                                 extra={**info, **split, "val_accuracy": fit["val_accuracy"]})
    write_json(out / "fold.json", {**info, **split, "train": fit})
    return result


def _baseline_fold(params, name, split, inputs, metadata, out, metrics, info) -> dict:
    from .baselines.fit_and_score import baseline_parts, run_baseline

    feature_set, classifier = baseline_parts(name)
    features = Path(inputs[0]).parent  # data/features/NAME -> data/features
    result = run_baseline(params["baselines"], split, params["train_defaults"], feature_set, classifier, metadata,
                          metrics, out / "model", features, out / "predictions.csv")
    result.update({**info, **split})
    write_json(metrics, result)
    write_json(out / "fold.json", {**info, **split})
    return result
