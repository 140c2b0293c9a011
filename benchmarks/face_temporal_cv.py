"""Face-side techniques of issue 15 under the 5-fold cross-validation by actor of whisper_layers_cv.py:
temporal models over the per-frame `fer` expression features, and facial-landmark geometry.

For each fold of `sequential_6x4` (4 test actors, 4 validation actors, 12 training actors) and protocol:
- `fer`: the baseline, logistic regression on the mean and std over the 16 frames (C on validation actors);
- `fer_rich`: logistic regression on richer temporal pooling: mean, std, max, min, the means of the first,
  middle and last third of the frames, and the mean absolute and std of the frame-to-frame deltas;
- `fer_lstm`, `fer_transformer` (avemo.models.video.FrameSequence, the registry's `frame_sequence`) and
  `fer_conv` (two 1D convolutions over time, mean and max over time): trained on the training actors'
  per-frame features standardised with training statistics, 3 seeds averaged; the number of epochs is
  chosen among EPOCHS on the validation actors (5 choices, as many as the C grid of the regressions);
- `lmk`: logistic regression on MediaPipe face-mesh geometry (benchmarks/face_landmarks_extract.py):
  ~100 key points centred between the eyes, rotated level and scaled by the eye distance, and 20
  distances and angles (mouth opening, width, corners, eye openings, brow heights, head pose proxies),
  pooled by mean, std and range over the frames; `fer_lmk`: the same side by side with `fer`'s pooling;
- calibrated late fusions (avemo.baselines.calibration, fitted on the validation actors) of `fer` with
  each technique, and with `imagenet` (today's video branch pair).
Every choice (C, epochs, fusion weights, keep or drop) reads validation actors only; test accuracy is reported.

    nice -n 10 python benchmarks/face_temporal_cv.py --features data/features \
        --landmarks /work/scratch/face/landmarks_points.npz --out docs/results/ravdess-lite/face_temporal_cv.json \
        --probabilities /work/scratch/face
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_layers_cv import branch_on_val, cached, score, views  # noqa: E402  (the shared protocol of the CV benchmarks)

from avemo.baselines.calibration import fit_calibrated, fuse_calibrated  # noqa: E402
from avemo.baselines.features import pooled  # noqa: E402
from avemo.cv import fold_split  # noqa: E402
from avemo.ids import parse_clip_id  # noqa: E402
from avemo.protocols import PROTOCOLS, SINGLE_CLIP  # noqa: E402

EPOCHS = (5, 10, 20, 30, 45)
SEEDS = (0, 1, 2)
NEURAL = ("fer_lstm", "fer_transformer", "fer_conv")
LIPS = [0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269, 270,
        291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415]
EYES = [249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466,
        7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246]
BROWS = [276, 282, 283, 285, 293, 295, 296, 300, 334, 336, 46, 52, 53, 55, 63, 65, 66, 70, 105, 107]
NOSE_AND_OVAL = [1, 4, 6, 98, 168, 327, 10, 152, 58, 288, 234, 454]  # nose tip/bridge/wings, forehead, chin, jaw, cheeks
KEY_POINTS = LIPS + EYES + BROWS + NOSE_AND_OVAL
DISTANCES = {  # (a, b): distance between two mesh points, in eye distances
    "mouth_open": (13, 14), "mouth_width": (61, 291), "lips_outer": (0, 17), "right_eye_open": (159, 145),
    "left_eye_open": (386, 374), "right_brow_eye": (105, 159), "left_brow_eye": (334, 386),
    "right_inner_brow_eye": (107, 133), "left_inner_brow_eye": (336, 362), "inner_brows": (107, 336),
    "nose_upper_lip": (1, 0), "nose_chin": (1, 152), "right_cheek_mouth": (234, 61), "left_cheek_mouth": (454, 291)}


# ---------------------------------------------------------------- feature sets

def rich_pool(values: np.ndarray) -> np.ndarray:
    """(n, T, d) -> (n, 9d): mean, std, max, min, thirds' means, mean |delta| and std of deltas over time."""
    thirds = np.array_split(values, 3, axis=1)
    deltas = np.diff(values, axis=1)
    return np.concatenate([values.mean(1), values.std(1), values.max(1), values.min(1),
                           *[t.mean(1) for t in thirds], np.abs(deltas).mean(1), deltas.std(1)], axis=1)


def fill_missing(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Frames without a mesh take the nearest found frame of their clip (clips with none stay zero)."""
    points = points.copy()
    for i in np.flatnonzero(~found.all(1) & found.any(1)):
        have = np.flatnonzero(found[i])
        for j in np.flatnonzero(~found[i]):
            points[i, j] = points[i, have[np.abs(have - j).argmin()]]
    return points


def geometry(points: np.ndarray) -> np.ndarray:
    """(n, T, 468, 3) mesh points -> (n, T, f) per-frame geometry: key points centred between the eye
    corners, rotated so that the eye line is level and scaled by the eye distance; distances between
    points; mouth-corner lift, roll and yaw/pitch proxies."""
    xy = points[..., :2].astype(np.float64)
    right, left = xy[..., 33, :], xy[..., 263, :]
    centre, eye = (right + left) / 2, left - right
    scale = np.linalg.norm(eye, axis=-1)[..., None] + 1e-6
    roll = np.arctan2(eye[..., 1], eye[..., 0])
    cos, sin = np.cos(-roll)[..., None], np.sin(-roll)[..., None]
    rel = (xy - centre[..., None, :]) / scale[..., None]
    level = np.stack([cos * rel[..., 0] - sin * rel[..., 1], sin * rel[..., 0] + cos * rel[..., 1]], axis=-1)
    keys = level[..., KEY_POINTS, :].reshape(*level.shape[:2], -1)
    dists = np.stack([np.linalg.norm(level[..., a, :] - level[..., b, :], axis=-1) for a, b in DISTANCES.values()], -1)
    lip_centre_y = (level[..., 13, 1] + level[..., 14, 1]) / 2
    corner_lift = lip_centre_y - (level[..., 61, 1] + level[..., 291, 1]) / 2
    mouth_ratio = dists[..., 0] / (dists[..., 1] + 1e-6)
    yaw = level[..., 1, 0]  # nose tip left/right of the eye centre
    pitch = level[..., 1, 1] / (dists[..., list(DISTANCES).index("nose_chin")] + 1e-6)
    extras = np.stack([corner_lift, mouth_ratio, roll, yaw, pitch, points[..., 1, 2].astype(np.float64)], -1)
    return np.concatenate([keys, dists, extras], axis=-1).astype(np.float32)


def pool_geometry(per_frame: np.ndarray) -> np.ndarray:
    return np.concatenate([per_frame.mean(1), per_frame.std(1), per_frame.max(1) - per_frame.min(1)], axis=1)


def load_landmarks(path: Path, clips: list[str]) -> tuple[np.ndarray, dict]:
    with np.load(path) as arrays:
        index = {str(c): i for i, c in enumerate(arrays["clips"])}
        rows = [index[c] for c in clips]
        points, found = arrays["points"][rows].astype(np.float32), arrays["found"][rows]
        seconds = float(arrays["seconds_per_frame"])
    per_frame = geometry(fill_missing(points, found))
    info = {"frames": int(found.size), "frames_without_mesh": int((~found).sum()),
            "clips_without_any_mesh": int((~found.any(1)).sum()), "ms_per_frame_one_thread": round(1000 * seconds, 2),
            "per_frame_features": int(per_frame.shape[-1])}
    return per_frame, info


# ---------------------------------------------------------------- temporal models

def temporal_model(name: str, frames: int, dim: int):
    import torch
    from torch import nn

    from avemo.models.video import FrameSequence

    if name == "fer_lstm":
        return FrameSequence({"fer": (frames, dim)}, inputs=("fer",), temporal="lstm", hidden=64, dropout=0.3)
    if name == "fer_transformer":
        return FrameSequence({"fer": (frames, dim)}, inputs=("fer",), temporal="transformer", hidden=64, heads=4,
                             dropout=0.3)

    class TemporalConv(nn.Module):
        """Two 1D convolutions over time (kernel 3), mean and max over time, linear head."""

        def __init__(self, hidden: int = 64, dropout: float = 0.3):
            super().__init__()
            self.body = nn.Sequential(nn.Dropout(dropout), nn.Conv1d(dim, hidden, 3, padding=1), nn.BatchNorm1d(hidden),
                                      nn.ReLU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 8))

        def forward(self, batch):
            x = self.body(batch["fer"].transpose(1, 2))
            return self.head(torch.cat([x.mean(2), x.amax(2)], 1))

    return TemporalConv()


def train_temporal(name: str, x_train, y_train, x_val, y_val, x_test) -> dict:
    """Seeds averaged at each checkpoint of EPOCHS; the checkpoint with the best validation score kept."""
    import torch

    def predict(model, x):
        model.eval()
        with torch.no_grad():
            return torch.softmax(model({"fer": torch.from_numpy(x)}), -1).numpy()

    sums = {e: [np.zeros((len(x_val), 8)), np.zeros((len(x_test), 8))] for e in EPOCHS}
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    for seed in SEEDS:
        torch.manual_seed(seed)
        model = temporal_model(name, *x_train.shape[1:])
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
        generator = torch.Generator().manual_seed(seed)
        for epoch in range(1, max(EPOCHS) + 1):
            model.train()
            for batch in torch.randperm(len(xt), generator=generator).split(32):
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(model({"fer": xt[batch]}), yt[batch]).backward()
                optimiser.step()
            if epoch in sums:
                sums[epoch][0] += predict(model, x_val) / len(SEEDS)
                sums[epoch][1] += predict(model, x_test) / len(SEEDS)
    best = max(EPOCHS, key=lambda e: score(sums[e][0], y_val))
    return {"epochs": best, "val": sums[best][0], "test": sums[best][1]}


# ---------------------------------------------------------------- cross-validation

def fit_fold(fold: int, sequences: dict, pooled_inputs: dict, labels, actors, neural: dict, log,
             cache: Path | None = None) -> tuple[dict, dict]:
    """{protocol: {variant: {"val", "test" probabilities, "C" or "epochs"}}} and the fold's split."""
    split = fold_split("sequential_6x4", fold, actors, 4, 0)
    test_mask, val_mask = np.isin(actors, split["test_actors"]), np.isin(actors, split["val_actors"])
    parts = {"train": ~test_mask & ~val_mask, "val": val_mask, "test": test_mask}
    y = {p: labels[m] for p, m in parts.items()}
    out = {}
    for protocol in neural:
        out[protocol] = {}
        for name, x in pooled_inputs.items():
            part = {p: {"x": x[m], "actors": actors[m]} for p, m in parts.items()}
            def fit_branch(part=part):
                xtr, xva, xte = views(part["train"], part["val"], part["test"], protocol)
                return branch_on_val(xtr, y["train"], xva, y["val"], xte)

            out[protocol][name] = cached(cache, f"{fold}-{protocol}-{name}", fit_branch)
        for name in neural[protocol]:
            def fit_temporal(name=name):
                t0 = time.time()
                part = {p: {"x": sequences["fer"][m], "actors": actors[m]} for p, m in parts.items()}
                xtr, xva, xte = views(part["train"], part["val"], part["test"], protocol)
                return {**train_temporal(name, xtr, y["train"], xva, y["val"], xte), "seconds": round(time.time() - t0, 1)}

            out[protocol][name] = cached(cache, f"{fold}-{protocol}-{name}", fit_temporal)
        log(f"fold {fold} {protocol}: " + ", ".join(
            f"{n} val {score(r['val'], y['val'])[0]:.3f} test {score(r['test'], y['test'])[0]:.3f}"
            for n, r in out[protocol].items()))
    return out, {**split, "y": y, "val_actors_of_clips": actors[val_mask]}


def cross_fitted(val: list[np.ndarray], y_val: np.ndarray, val_actors: np.ndarray) -> np.ndarray:
    """Validation probabilities of a fusion whose weights never saw the clip: fitted on half of the
    validation actors, applied to the other half, and the other way round (the in-sample validation
    accuracy of a fusion fitted there flatters it against a single branch)."""
    halves = np.isin(val_actors, np.unique(val_actors)[::2])
    out = np.zeros_like(val[0], dtype=np.float64)
    for fit_rows in (halves, ~halves):
        calibrated = fit_calibrated([v[fit_rows] for v in val], y_val[fit_rows])
        out[~fit_rows] = fuse_calibrated([v[~fit_rows] for v in val], calibrated)
    return out


def add_fusions(found: dict, y: dict, val_actors: np.ndarray) -> None:
    """Calibrated late fusion (fitted on validation) of fer with every other branch, and fer+imagenet with each."""
    branches = [n for n in found if n not in ("fer", "imagenet")]
    combos = {f"fer+{n}": ["fer", n] for n in branches + ["imagenet"]}
    combos.update({f"fer+imagenet+{n}": ["fer", "imagenet", n] for n in branches})
    combos.update({"fer_rich+lmk": ["fer_rich", "lmk"], "fer_rich+imagenet": ["fer_rich", "imagenet"],
                   "fer_rich+imagenet+lmk": ["fer_rich", "imagenet", "lmk"]})  # the two kept techniques together
    for combo, names in combos.items():
        if not all(n in found for n in names):
            continue
        val = [found[n]["val"] for n in names]
        calibrated = fit_calibrated(val, y["val"])
        found[combo] = {"val": fuse_calibrated(val, calibrated),
                        "test": fuse_calibrated([found[n]["test"] for n in names], calibrated),
                        "val_crossfit": cross_fitted(val, y["val"], val_actors),
                        "weights": [round(w, 3) for w in calibrated["weights"]]}


def stats(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)), 4),
            "folds": [round(float(v), 4) for v in values]}


def verdicts(folds: list[dict], protocols) -> dict:
    """Per variant and protocol: val and test accuracy over folds, the change against its reference on each
    (fer for single branches and fusions without imagenet, fer+imagenet for those with it), and keep or drop: kept
    when the single-clip validation accuracy is higher on average AND in at least 3 of the 5 folds. A
    fusion's validation accuracy is the cross-fitted one (`val`; `val_in_sample`: weights fitted on the
    very clips scored)."""
    out = {}
    for name in folds[0]["results"][protocols[0]]:
        fused_with_imagenet = "imagenet" in name.split("+") and name not in ("imagenet", "fer+imagenet")
        reference = "fer+imagenet" if fused_with_imagenet else "fer"
        row = {}
        for protocol in protocols:
            if name not in folds[0]["results"][protocol]:
                continue
            acc = {part: [f["results"][protocol][name][part] for f in folds] for part in ("val_crossfit", "test", "val")}
            ref = {part: [f["results"][protocol][reference][part] for f in folds] for part in ("val_crossfit", "test")}
            row[protocol] = {"val": stats(acc["val_crossfit"]), "test": stats(acc["test"]), "reference": reference,
                             "val_change": stats(np.subtract(acc["val_crossfit"], ref["val_crossfit"])),
                             "test_change": stats(np.subtract(acc["test"], ref["test"])),
                             "val_in_sample": stats(acc["val"])}
        gains = np.asarray(row[SINGLE_CLIP]["val_change"]["folds"])
        row["val_folds_better"] = int((gains > 0).sum())
        row["kept"] = bool(name != reference and gains.mean() > 0 and (gains > 0).sum() >= 3)
        out[name] = row
    return out


def save_probabilities(folder: Path, clips: list[str], fold_probs: dict) -> list[str]:
    """facetime_<variant>.npz: f{fold}_{protocol}_val / _test (rows in sorted-clip order of that part), clips."""
    written = []
    variants = {v for per_fold in fold_probs.values() for per_protocol in per_fold.values() for v in per_protocol}
    folder.mkdir(parents=True, exist_ok=True)
    for variant in sorted(variants):
        arrays = {"clips": np.array(clips)}
        for fold, per_protocol in fold_probs.items():
            for protocol, found in per_protocol.items():
                if variant in found:
                    arrays[f"f{fold}_{protocol}_val"] = found[variant]["val"].astype(np.float32)
                    arrays[f"f{fold}_{protocol}_test"] = found[variant]["test"].astype(np.float32)
        path = folder / f"facetime_{variant.replace('+', '_')}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
        written.append(str(path))
    return written


def markdown(verdict: dict, protocols) -> str:
    fmt = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    head = "| variant | " + " | ".join(f"val {p} | test {p} | val change | test change" for p in protocols) + " | kept |"
    lines = [head, "|" + "---|" * (2 + 4 * len(protocols))]
    for name, row in verdict.items():
        cells = [f"{fmt(row[p]['val'])} | {fmt(row[p]['test'])} | {row[p]['val_change']['mean']:+.3f} | "
                 f"{row[p]['test_change']['mean']:+.3f}" if p in row else "– | – | – | –" for p in protocols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'kept' if row['kept'] else 'dropped'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True, help="folder of the encode stages' outputs (fer, imagenet)")
    parser.add_argument("--landmarks", type=Path, default=None, help="face_landmarks_extract.py output")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--probabilities", type=Path, default=None, help="folder for facetime_<variant>.npz")
    parser.add_argument("--landmark-features", type=Path, default=None, help="write the per-frame geometry here")
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping each fold's fitted branches")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS))
    parser.add_argument("--neural", nargs="*", default=list(NEURAL), help="temporal models, single clip")
    parser.add_argument("--neural-adapted", nargs="*", default=["fer_conv"],
                        help="temporal models also trained under speaker_adapted (each costs ~1 min a fold)")
    args = parser.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    started = time.time()

    def log(line):
        print(f"[{time.time() - started:6.0f} s] {line}", flush=True)

    raw = {}
    for name in ("fer", "imagenet"):
        with np.load(args.features / name / "features.npz") as arrays:
            raw[name] = dict(zip((str(c) for c in arrays["clips"]), np.asarray(arrays["values"], dtype=np.float32)))
    clips = sorted(set(raw["fer"]) & set(raw["imagenet"]))
    sequences = {name: np.stack([raw[name][c] for c in clips]) for name in raw}
    ids = [parse_clip_id(c + ".mp4") for c in clips]
    labels, actors = np.array([i.emotion - 1 for i in ids]), np.array([i.actor for i in ids])
    pooled_inputs = {"fer": pooled("fer", sequences["fer"]), "imagenet": pooled("imagenet", sequences["imagenet"]),
                     "fer_rich": rich_pool(sequences["fer"])}
    landmark_info = None
    if args.landmarks:
        t0 = time.time()
        per_frame, landmark_info = load_landmarks(args.landmarks, clips)
        landmark_info["geometry_seconds_per_clip"] = round((time.time() - t0) / len(clips), 5)
        pooled_inputs["lmk"] = pool_geometry(per_frame)
        pooled_inputs["fer_lmk"] = np.concatenate([pooled_inputs["fer"], pooled_inputs["lmk"]], axis=1)
        if args.landmark_features:
            np.savez_compressed(args.landmark_features, clips=np.array(clips), values=per_frame.astype(np.float16))
        log(f"landmarks: {landmark_info}")
    log(f"{len(clips)} clips; pooled inputs {', '.join(f'{k} {v.shape[1]}' for k, v in pooled_inputs.items())}")
    folds, fold_probs = [], {}
    with threadpool_limits(limits=1):
        for fold in args.folds:
            neural = {p: args.neural if p == SINGLE_CLIP else [n for n in args.neural_adapted if n in args.neural]
                      for p in args.protocols}
            found, split = fit_fold(fold, sequences, pooled_inputs, labels, actors, neural, log, args.cache)
            y, val_actors = split.pop("y"), split.pop("val_actors_of_clips")
            for protocol in args.protocols:
                add_fusions(found[protocol], y, val_actors)
            fold_probs[fold] = found
            folds.append({"fold": fold, **{k: v for k, v in split.items()}, "results": {
                protocol: {name: {"val": round(score(r["val"], y["val"])[0], 4),
                                  "test": round(score(r["test"], y["test"])[0], 4),
                                  "val_crossfit": round(score(r.get("val_crossfit", r["val"]), y["val"])[0], 4),
                                  **{k: r[k] for k in ("C", "epochs", "weights", "seconds") if k in r}}
                           for name, r in found[protocol].items()} for protocol in args.protocols}})
    verdict = verdicts(folds, args.protocols)
    written = save_probabilities(args.probabilities, clips, fold_probs) if args.probabilities else []
    result = {"protocol": "sequential_6x4 folds " + ",".join(map(str, args.folds)) + ", 4 validation actors a fold "
              "(cv.seed 0); C, epochs, fusion weights and keep/drop chosen on validation actors",
              "clips": len(clips), "epochs_grid": list(EPOCHS), "seeds": list(SEEDS), "landmarks": landmark_info,
              "summary": verdict, "folds": folds, "probabilities": written, "seconds": round(time.time() - started)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"written {args.out}")
    print(markdown(verdict, args.protocols))


if __name__ == "__main__":
    main()
