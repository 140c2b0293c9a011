"""Which late-fusion rule, and which audio input, on VALIDATION actors only (issue 15, item 4).

The fusion rules of `baselines.fusion` are fitted on a fold's validation actors, so their accuracy there is
in-sample. This script compares them out of sample without touching the test actors: within each fold of
`sequential_6x4` the four validation actors are cut into two pairs, each rule is fitted on one pair's clips
and scored on the other pair's (and the other way round), and the scores are pooled over the five folds
(1200 validation clips, each scored once by a rule fitted without it). The branches' probabilities are those
of benchmarks/whisper_layers_cv.py (one logistic regression per input, trained on the fold's 12 training
actors, C chosen on validation actors; `--cache` reuses its fitted branches).

The same cross-fitted validation score compares the audio inputs of the released configuration: today's
`whisper` (final layer) against `layers_cv` (the layers chosen by the training actors), each fused with fer
and imagenet. Test-fold figures are printed beside, labelled, and choose nothing.

    nice -n 10 python benchmarks/fusion_choice.py --features data/features --cache CACHE \
        --out docs/results/ravdess-lite/fusion_choice.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_layers_cv import branch_on_val, cached, fold_parts, load_input, score, views  # noqa: E402

from avemo.baselines.bundle import fuse  # noqa: E402
from avemo.baselines.calibration import fit_calibrated, fuse_calibrated  # noqa: E402
from avemo.baselines.fit_and_score import best_weights  # noqa: E402
from avemo.ids import parse_clip_id  # noqa: E402
from avemo.protocols import PROTOCOLS  # noqa: E402

COMBOS = {"av_layers_cv": ["layers_cv", "fer", "imagenet"], "av_whisper": ["whisper", "fer", "imagenet"],
          "video": ["fer", "imagenet"]}
RULES = {"grid": (lambda probs, y: best_weights(probs, y), lambda probs, fit: fuse(probs, fit)),
         "calibrated": (fit_calibrated, fuse_calibrated)}


def cross_fitted(probs: list[np.ndarray], labels: np.ndarray, actors: np.ndarray, rule: str) -> np.ndarray:
    """Each validation clip's fused probabilities from the rule fitted on the other pair of validation actors."""
    fit, apply = RULES[rule]
    present = sorted(np.unique(actors))
    pairs = [present[: len(present) // 2], present[len(present) // 2:]]
    out = np.zeros_like(probs[0])
    for fit_pair, score_pair in (pairs, pairs[::-1]):
        on, off = np.isin(actors, fit_pair), np.isin(actors, score_pair)
        out[off] = apply([p[off] for p in probs], fit([p[on] for p in probs], labels[on]))
    return out


def branch_probs(fold, protocol, name, x, parts, actors, y, cache, suffix=""):
    def compute():
        part = {p: {"x": x[m], "actors": actors[m]} for p, m in parts.items()}
        xtr, xva, xte = views(part["train"], part["val"], part["test"], protocol)
        return branch_on_val(xtr, y["train"], xva, y["val"], xte)

    return cached(cache, f"{fold}-{protocol}-{name}{suffix}", compute)


def extra_branches(specs: list[str], clips: list[str]) -> dict[str, dict]:
    """NAME=FILE.npz: a video branch's probabilities from a face-side benchmark (keys f{fold}_{protocol}_val /
    _test, rows in sorted-clip order of each part, and `clips`), fused here with the audio branch."""
    out = {}
    for spec in specs:
        name, path = spec.split("=", 1)
        with np.load(path) as arrays:
            if [str(c) for c in arrays["clips"]] != clips:
                raise SystemExit(f"{path}: its clips are not this data's {len(clips)} clips")
            out[name] = {k: arrays[k] for k in arrays.files if k != "clips"}
    return out


def run_fold(fold, data, labels, actors, cache, extra=None) -> dict:
    found = fold_parts(fold, labels, actors, data["whisper_layers"], cache)
    if found is None:
        return {}
    split, parts, y, choice = found
    layers = data["whisper_layers"]
    inputs = {"layers_cv": (layers[:, choice["layers"]].reshape(len(layers), -1),
                            "-" + "_".join(map(str, choice["layers"]))),
              **{n: (data[n], "") for n in ("whisper", "fer", "imagenet")}}
    out = {"fold": fold, **split, "layers": choice["layers"], "protocols": {}}
    for protocol in PROTOCOLS:
        probs = {n: branch_probs(fold, protocol, n, x, parts, actors, y, cache, sfx) for n, (x, sfx) in inputs.items()}
        for name, arrays in (extra or {}).items():
            probs[name] = {part: arrays[f"f{fold}_{protocol}_{part}"] for part in ("val", "test")}
        row = {"branches": {n: {"val": score(p["val"], y["val"])[0], "test": score(p["test"], y["test"])[0]}
                            for n, p in probs.items()}, "fusion": {}}
        combos = dict(COMBOS)
        for name in extra or {}:
            combos |= {f"av_layers_cv_{name}": ["layers_cv", name], f"av_layers_cv_{name}_imagenet": ["layers_cv", name, "imagenet"],
                       f"av_layers_cv_fer_imagenet_{name}": ["layers_cv", "fer", "imagenet", name]}
        for combo, names in combos.items():
            val = [probs[n]["val"] for n in names]
            test = [probs[n]["test"] for n in names]
            row["fusion"][combo] = {}
            for rule, (fit, apply) in RULES.items():
                held = cross_fitted(val, y["val"], actors[val_mask := parts["val"]], rule)
                row["fusion"][combo][rule] = {
                    "val_cross_fitted": score(held, y["val"])[0], "val_log_likelihood": score(held, y["val"])[1],
                    "val_correct": int((held.argmax(1) == y["val"]).sum()), "val_clips": int(val_mask.sum()),
                    "test": score(apply(test, fit(val, y["val"])), y["test"])[0]}
        out["protocols"][protocol] = row
        print(f"fold {fold} {protocol}: " + "; ".join(
            f"{c} " + ", ".join(f"{r} val {v['val_cross_fitted']:.3f} test {v['test']:.3f}" for r, v in rules.items())
            for c, rules in row["fusion"].items()), flush=True)
    return out


def pooled(folds: list[dict]) -> dict:
    """Per protocol, combination and rule: validation accuracy pooled over all folds' validation clips, its
    log-likelihood, and the test accuracy as mean ± std over folds (reported, not used)."""
    out = {}
    for protocol in PROTOCOLS:
        out[protocol] = {}
        for combo in folds[0]["protocols"][protocol]["fusion"]:
            out[protocol][combo] = {}
            for rule in RULES:
                rows = [f["protocols"][protocol]["fusion"][combo][rule] for f in folds]
                tests = np.array([r["test"] for r in rows])
                out[protocol][combo][rule] = {
                    "val_cross_fitted": round(sum(r["val_correct"] for r in rows) / sum(r["val_clips"] for r in rows), 4),
                    "val_log_likelihood": round(float(np.mean([r["val_log_likelihood"] for r in rows])), 4),
                    "val_folds_better": None,
                    "test_mean": round(float(tests.mean()), 4), "test_std": round(float(tests.std(ddof=1)), 4)}
            a, b = ([f["protocols"][protocol]["fusion"][combo][r]["val_cross_fitted"] for f in folds] for r in RULES)
            out[protocol][combo]["calibrated"]["val_folds_better"] = int(sum(y > x for x, y in zip(a, b)))
            out[protocol][combo]["grid"]["val_folds_better"] = int(sum(x > y for x, y in zip(a, b)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--layers", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--extra", nargs="*", default=[], help="NAME=FILE.npz video branches of the face benchmarks")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    raw = {"whisper_layers": load_input(args.layers or args.features / "whisper_layers", "whisper_layers")}
    raw.update({n: load_input(args.features / n, n) for n in ("whisper", "fer", "imagenet")})
    clips = sorted(set.intersection(*(set(v) for v in raw.values())))
    data = {n: np.stack([v[c] for c in clips]) for n, v in raw.items()}
    ids = [parse_clip_id(c + ".mp4") for c in clips]
    labels, actors = np.array([i.emotion - 1 for i in ids]), np.array([i.actor for i in ids])
    with threadpool_limits(limits=1):
        extra = extra_branches(args.extra, clips)
        folds = [r for f in range(5) if (r := run_fold(f, data, labels, actors, args.cache, extra))]
    result = {"protocol": "sequential_6x4 folds 0-4, cv.seed 0; rules fitted on one pair of a fold's validation "
                          "actors and scored on the other pair (both ways); test figures reported only",
              "pooled": pooled(folds), "folds": folds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["pooled"], indent=1))


if __name__ == "__main__":
    main()
