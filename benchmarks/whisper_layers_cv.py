"""Every layer of the Whisper encoder, and calibrated late fusion, under 5-fold cross-validation by actor.

Reads the encode stages' outputs (features.npz) of whisper_layers (all 7 states of base, pooled), fer,
imagenet and whisper, and for each fold of `sequential_6x4` present in the data (ravdess-lite: folds 0-4):
- one logistic regression per Whisper layer alone, C chosen on the fold's validation actors;
- the layers chosen by 3-fold cross-validation over the fold's TRAINING actors grouped by actor (single layers
  ranked by it, then the union of the best 2 and 3 compared by it too), C then chosen on validation actors;
- all layers side by side;
- fer and imagenet logistic regressions (the video branches), C on validation actors;
- late fusion of the branches: calibrated (a temperature per branch and non-negative weights fitted on the
  validation log-likelihood, avemo.baselines.calibration) against the accuracy-first grid of the
  late_logreg baseline (avemo.baselines.fit_and_score.best_weights).
Single clip: inputs standardised with the training actors' statistics, classifiers trained so. Speaker
adapted: every clip standardised with its actor's other clips (never itself), classifiers trained on training
clips standardised with their own actor's statistics.

    nice -n 10 python benchmarks/whisper_layers_cv.py --features data/features --out docs/results/ravdess-lite/whisper_layers_cv.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from avemo.baselines.calibration import fit_calibrated, fuse_calibrated  # fuse_calibrated = fuse(effective)
from avemo.baselines.features import pooled
from avemo.baselines.bundle import fuse
from avemo.baselines.fit_and_score import best_weights
from avemo.cv import fold_split
from avemo.ids import parse_clip_id
from avemo.normalize import ProtocolNormalizer
from avemo.protocols import PROTOCOLS, SINGLE_CLIP

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
INNER_C = (1e-3, 1e-2, 1e-1)


def load_input(folder: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(folder / "features.npz") as arrays:
        clips, values = [str(c) for c in arrays["clips"]], np.asarray(arrays["values"], dtype=np.float32)
    if name == "whisper_layers":
        return {c: v for c, v in zip(clips, values)}  # (layers, 2d): kept per layer
    return dict(zip(clips, pooled(name, values)))


def fit_lr(x, y, c, seed=0):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x, y)


def probabilities(model, x) -> np.ndarray:
    probs = np.zeros((len(x), 8))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


def score(probs, y) -> tuple[float, float]:
    return float((probs.argmax(1) == y).mean()), float(np.log(probs[np.arange(len(y)), y] + 1e-9).mean())


def branch_on_val(x_train, y_train, x_val, y_val, x_test) -> dict:
    """C chosen on the validation clips (accuracy, then log-likelihood); val and test probabilities."""
    best = None
    for c in C_GRID:
        model = fit_lr(x_train, y_train, c)
        val = probabilities(model, x_val)
        key = score(val, y_val)
        if best is None or key > best[0]:
            best = (key, c, val, probabilities(model, x_test))
    return {"C": best[1], "val": best[2], "test": best[3]}


def views(train, val, test, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three parts standardised under a protocol (a dict of one input 'x')."""
    norm = ProtocolNormalizer.fit({"x": train["x"]})
    if mode == SINGLE_CLIP:
        return tuple(norm.single_clip({"x": p["x"]})["x"] for p in (train, val, test))
    train_view = norm.training_view({"x": train["x"]}, train["actors"], "speaker", np.random.default_rng(0))["x"]
    return (train_view, norm.speaker_adapted({"x": val["x"]}, val["actors"])["x"],
            norm.speaker_adapted({"x": test["x"]}, test["actors"])["x"])


def inner_cv_score(x, y, actors, folds=3) -> float:
    """Mean accuracy over folds grouped by actor (training actors only), the best of INNER_C."""
    from sklearn.model_selection import GroupKFold

    splits = list(GroupKFold(n_splits=folds).split(x, y, actors))
    best = 0.0
    for c in INNER_C:
        accs = []
        for tr, te in splits:
            mean, std = x[tr].mean(0), x[tr].std(0) + 1e-5
            accs.append(float((fit_lr((x[tr] - mean) / std, y[tr], c).predict((x[te] - mean) / std) == y[te]).mean()))
        best = max(best, float(np.mean(accs)))
    return best


def choose_layers(layers: np.ndarray, y, actors) -> dict:
    """Layers chosen by cross-validation over the training actors: singles ranked, then the best 2 and 3."""
    singles = {k: inner_cv_score(layers[:, k], y, actors) for k in range(layers.shape[1])}
    ranked = sorted(singles, key=singles.get, reverse=True)
    candidates = {(ranked[0],): singles[ranked[0]]}
    for top in (2, 3):
        chosen = tuple(sorted(ranked[:top]))
        candidates[chosen] = inner_cv_score(layers[:, list(chosen)].reshape(len(y), -1), y, actors)
    best = max(candidates, key=candidates.get)
    return {"layers": list(best), "inner_cv": {"+".join(map(str, k)): round(v, 4) for k, v in candidates.items()},
            "singles": {str(k): round(v, 4) for k, v in singles.items()}}


def cached(cache: Path | None, key: str, compute):
    """compute() once per key when a cache folder is given (a rerun adds branches without refitting the others)."""
    import pickle

    if cache is None:
        return compute()
    path = cache / f"{key}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(value))
    return value


def fold_parts(fold: int, labels, actors, layers: np.ndarray, cache: Path | None = None):
    """(split, {part: clip mask}, {part: labels}, layer choice) of one `sequential_6x4` fold, or None when none
    of its test actors is in the data; the layers are chosen by cross-validation over its training actors."""
    split = fold_split("sequential_6x4", fold, actors, 4, 0)
    if split is None:
        return None
    test, val = np.isin(actors, split["test_actors"]), np.isin(actors, split["val_actors"])
    parts = {"train": ~test & ~val, "val": val, "test": test}
    y = {p: labels[m] for p, m in parts.items()}
    choice = cached(cache, f"choice-{fold}", lambda: choose_layers(layers[parts["train"]], y["train"],
                                                                   actors[parts["train"]]))
    return split, parts, y, choice


def run_fold(fold: int, data: dict, clips: list[str], labels, actors, log, cache: Path | None = None,
             only: list[str] | None = None) -> dict:
    t0 = time.time()
    found = fold_parts(fold, labels, actors, data["whisper_layers"], cache)
    if found is None:
        return {}
    split, parts, y, choice = found
    layers = data["whisper_layers"]
    log(f"fold {fold}: layers chosen by inner CV {choice['layers']} ({time.time() - t0:.0f} s) {choice['inner_cv']}")
    inputs = {f"layer_{k}": layers[:, k] for k in range(layers.shape[1])}
    inputs["layers_all"] = layers.reshape(len(layers), -1)
    inputs["layers_cv"] = layers[:, choice["layers"]].reshape(len(layers), -1)
    for name in ("fer", "imagenet", "whisper"):
        if name in data:
            inputs[name] = data[name]
    inputs = {k: v for k, v in inputs.items() if not only or k in only}
    out = {"fold": fold, **split, "layers_cv": choice, "branches": {}, "fusion": {}}
    probs = {}
    for protocol in PROTOCOLS:
        probs[protocol] = {}
        for name, x in inputs.items():
            def compute(x=x):
                part = {p: {"x": x[m], "actors": actors[m]} for p, m in parts.items()}
                xtr, xva, xte = views(part["train"], part["val"], part["test"], protocol)
                return branch_on_val(xtr, y["train"], xva, y["val"], xte)

            key = f"{fold}-{protocol}-{name}" + (f"-{'_'.join(map(str, choice['layers']))}" if name == "layers_cv" else "")
            found = cached(cache, key, compute)
            probs[protocol][name] = found
            out["branches"].setdefault(name, {})[protocol] = {
                "C": found["C"], "val": round(score(found["val"], y["val"])[0], 4),
                "test": round(score(found["test"], y["test"])[0], 4)}
        log(f"fold {fold} {protocol}: " + ", ".join(f"{n} {out['branches'][n][protocol]['test']:.3f}" for n in inputs))
        combos = {"av_layers_cv": ["layers_cv", "fer", "imagenet"], "av_final": ["layer_6", "fer", "imagenet"],
                  "av_whisper": ["whisper", "fer", "imagenet"], "video": ["fer", "imagenet"],
                  "av_layers_cv_fer": ["layers_cv", "fer"]}
        for combo, names in combos.items():
            if not all(n in probs[protocol] for n in names):
                continue
            val = [probs[protocol][n]["val"] for n in names]
            test = [probs[protocol][n]["test"] for n in names]
            calibrated = fit_calibrated(val, y["val"])
            grid = best_weights(val, y["val"])
            out["fusion"].setdefault(combo, {})[protocol] = {
                "branches": names,
                "calibrated": round(score(fuse_calibrated(test, calibrated), y["test"])[0], 4),
                "calibrated_val": round(score(fuse_calibrated(val, calibrated), y["val"])[0], 4),
                "temperatures": [round(t, 3) for t in calibrated["temperatures"]],
                "weights": [round(w, 3) for w in calibrated["weights"]],
                "grid": round(score(fuse(test, grid), y["test"])[0], 4),
                "grid_weights": [round(float(w), 3) for w in grid]}
        log(f"fold {fold} {protocol} fusion: " + ", ".join(
            f"{c} cal {v[protocol]['calibrated']:.3f} grid {v[protocol]['grid']:.3f}" for c, v in out["fusion"].items()))
    return out


def summary(folds: list[dict]) -> dict:
    def stats(values):
        values = np.asarray(values, dtype=float)
        return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)), 4),
                "folds": [round(float(v), 4) for v in values]}

    out = {"branches": {}, "fusion": {}}
    for name in folds[0]["branches"]:
        out["branches"][name] = {p: stats([f["branches"][name][p]["test"] for f in folds]) for p in PROTOCOLS}
    for combo in folds[0]["fusion"]:
        out["fusion"][combo] = {p: {how: stats([f["fusion"][combo][p][how] for f in folds])
                                    for how in ("calibrated", "grid")} for p in PROTOCOLS}
    out["layers_cv_chosen"] = [f["layers_cv"]["layers"] for f in folds]
    return out


def fmt(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(summary: dict) -> str:
    """The per-layer and fusion tables of docs/accuracy.md."""
    names = {f"layer_{k}": f"layer {k}" + (" (front end)" if k == 0 else " (final output, = `whisper`)" if k == 6 else "")
             for k in range(7)}
    names.update(layers_all="all 7 layers side by side", whisper="`whisper` (faster-whisper, 60 ms steps)",
                 layers_cv="layers chosen by CV over the training actors", fer="`fer`", imagenet="`imagenet`")
    lines = ["| input | single-clip WA | speaker-adapted WA |", "|---|---|---|"]
    for name, row in summary["branches"].items():
        lines.append(f"| {names.get(name, name)} | {fmt(row['single_clip'])} | {fmt(row['speaker_adapted'])} |")
    lines += ["", "| branches | fusion | single-clip WA | speaker-adapted WA |", "|---|---|---|---|"]
    for combo, row in summary["fusion"].items():
        for how in ("calibrated", "grid"):
            lines.append(f"| {combo} | {how} | {fmt(row['single_clip'][how])} | {fmt(row['speaker_adapted'][how])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True, help="folder of the encode stages' outputs")
    parser.add_argument("--layers", type=Path, default=None, help="whisper_layers output folder (default: FEATURES/whisper_layers)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping each fold's fitted branches")
    parser.add_argument("--only", nargs="+", default=None, help="branches to fit (layer_K, layers_all, layers_cv, fer...)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    started = time.time()
    raw = {"whisper_layers": load_input(args.layers or args.features / "whisper_layers", "whisper_layers")}
    for name in ("fer", "imagenet", "whisper"):
        if (args.features / name / "features.npz").is_file():
            raw[name] = load_input(args.features / name, name)
    clips = sorted(set.intersection(*(set(v) for v in raw.values())))
    data = {name: np.stack([values[c] for c in clips]) for name, values in raw.items()}
    ids = [parse_clip_id(c + ".mp4") for c in clips]
    labels = np.array([i.emotion - 1 for i in ids])
    actors = np.array([i.actor for i in ids])

    def log(line):
        print(f"[{time.time() - started:6.0f} s] {line}", flush=True)

    log(f"{len(clips)} clips, inputs {', '.join(f'{k} {v.shape[1:]}' for k, v in data.items())}")
    with threadpool_limits(limits=1):
        folds = [r for fold in args.folds if (r := run_fold(fold, data, clips, labels, actors, log, args.cache, args.only))]
    result = {"protocol": "sequential_6x4 folds " + ",".join(map(str, args.folds)) + ", 4 validation actors a fold "
              "(cv.seed 0), logistic regression, C on validation actors", "clips": len(clips),
              "summary": summary(folds), "folds": folds, "seconds": round(time.time() - started)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"written {args.out}")
    print(markdown(result["summary"]))


if __name__ == "__main__":
    main()
