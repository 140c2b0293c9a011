"""The face side of issue 15: test-time augmentation of the FER2013 mini-XCEPTION, and the network fine-tuned on
the training actors' face crops, under 5-fold cross-validation by actor (the protocol of whisper_layers_cv.py).

For each fold of `sequential_6x4` (ravdess-lite: folds 0-4; 12 training, 4 validation, 4 test actors):
- `fer`: the pretrained network's per-frame outputs (7 log-probabilities + 128 features), pooled, logistic
  regression with C on the validation actors (the `fer` baseline);
- `fer_flip`: the same, each frame's outputs averaged with those of its mirror image;
- `fer_flip_zoom`: averaged over 6 views (zoom 0.60, 0.65, 0.70 of the crop, each plain and mirrored);
- `ft_mean`: a copy of the network, its head made 8-way (RAVDESS classes, initialised from the matching FER2013
  rows; calm from neutral), its stem frozen, trained on the training actors' frames (label = the clip's) with
  augmentation (mirror, random zoom/shift/rotation, brightness and contrast), Adam; the epoch kept is the best
  on the validation actors' clip accuracy (frames' log-probabilities averaged per clip); clip = that average;
- `ft_mean_flip`: the same with each frame's mirror image averaged in;
- `ft_lr`, `ft_lr_flip`: the fine-tuned network's per-frame outputs (8 log-probabilities + 128 features)
  pooled, logistic regression with C on the validation actors;
and each of them fused with `imagenet` (calibrated late fusion fitted on the validation actors): the video branch.
Single clip: standardised with the training actors' statistics; speaker adapted: with the actor's other clips
(`ft_mean*` are not standardised: single clip only). Every choice is made on validation actors; test is reported.

    nice -n 10 python benchmarks/face_finetune_cv.py --strips data/faces/strips --features data/features \\
        --out docs/results/ravdess-lite/face_finetune_cv.json --probabilities /work/scratch/face --cache /work/scratch/face/facetune_cache
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_layers_cv import branch_on_val, cached, fmt, load_input, score, views  # noqa: E402

from avemo.baselines.calibration import fit_calibrated, fuse_calibrated  # noqa: E402
from avemo.baselines.features import pooled  # noqa: E402
from avemo.cv import fold_split  # noqa: E402
from avemo.encoders.fer import FER_CLASSES, INPUT_SIZE, TTA_VIEWS, average_views, fer_features, grey_input, load_fer  # noqa: E402
from avemo.faces.strip import load_strip  # noqa: E402
from avemo.ids import parse_clip_id  # noqa: E402
from avemo.protocols import PROTOCOLS, SINGLE_CLIP  # noqa: E402

FRAMES = 16
ZOOM = 0.65  # params.yaml features.video.fer.zoom
ZOOMS = (0.60, 0.65, 0.70)
RAVDESS_FROM_FER = (6, 6, 3, 4, 0, 2, 1, 5)  # neutral calm happy sad angry fearful disgust surprised -> FER2013 rows
VARIANTS = ("fer", "fer_flip", "fer_flip_zoom", "ft_mean", "ft_mean_flip", "ft_lr", "ft_lr_flip")
UNSTANDARDISED = ("ft_mean", "ft_mean_flip")


def load_grey(strips: Path, clips: list[str]) -> np.ndarray:
    """(clips, 16, s, s) uint8 grey face crops."""
    out = None
    for i, clip in enumerate(clips):
        crops = load_strip(strips / f"{clip}.jpg", FRAMES)
        if out is None:
            out = np.empty((len(clips), FRAMES, *crops.shape[1:3]), np.uint8)
        out[i] = [cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in crops]
    return out


@torch.no_grad()
def frame_outputs(model, grey: np.ndarray, zoom: float, flip: bool, batch_clips: int = 16) -> np.ndarray:
    """(clips, 16, k + 128): each frame's log-probabilities and penultimate features (the `fer` encoder's output)."""
    model.eval()
    out = []
    for start in range(0, len(grey), batch_clips):
        part = grey[start:start + batch_clips]
        x = grey_input(part.reshape(-1, *part.shape[2:]), zoom)
        x = (x.flip(3) if flip else x).contiguous(memory_format=torch.channels_last)
        logits, features = model(x)
        out.append(torch.cat([torch.log_softmax(logits, 1), features], 1).numpy().reshape(len(part), FRAMES, -1))
    return np.concatenate(out)


def cached_array(cache: Path | None, key: str, compute) -> np.ndarray:
    if cache is None:
        return compute()
    path = cache / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, value)
    return value


def eight_way(model):
    """The network with an 8-way head initialised from the FER2013 rows of the matching expressions."""
    old = model.classifier
    head = torch.nn.Conv2d(old.in_channels, 8, 3, padding=1)
    with torch.no_grad():
        head.weight.copy_(old.weight[list(RAVDESS_FROM_FER)])
        head.bias.copy_(old.bias[list(RAVDESS_FROM_FER)])
    model.classifier = head
    return model


def augmented(grey: np.ndarray, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Random zoom, shift, rotation, mirror, brightness and contrast of (n, s, s) grey crops -> model input."""
    n, side = len(grey), grey.shape[1]
    zoom = ZOOM * np.exp(rng.uniform(-0.1, 0.1, n) * strength)
    angle = rng.uniform(-10, 10, n) * strength
    shift = rng.uniform(-0.05, 0.05, (n, 2)) * side * ZOOM * strength
    out = np.empty((n, INPUT_SIZE, INPUT_SIZE), np.float32)
    centre = (side - 1) / 2
    for i in range(n):
        cx, cy = centre + shift[i]
        m = cv2.getRotationMatrix2D((cx, cy), angle[i], INPUT_SIZE / (side * zoom[i]))
        m[:, 2] += ((INPUT_SIZE - 1) / 2 - cx, (INPUT_SIZE - 1) / 2 - cy)
        out[i] = cv2.warpAffine(grey[i], m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
    out = np.where(rng.random(n)[:, None, None] < 0.5, out[:, :, ::-1], out)
    x = out / 127.5 - 1.0
    contrast = 1 + rng.uniform(-0.2, 0.2, (n, 1, 1)) * strength
    brightness = rng.uniform(-0.2, 0.2, (n, 1, 1)) * strength
    return torch.from_numpy((x * contrast + brightness).astype(np.float32)).unsqueeze(1)


def clip_logprobs(frames: np.ndarray) -> np.ndarray:
    """(clips, 16, 8 + 128) -> (clips, 8) probabilities: the frames' log-probabilities averaged."""
    mean = frames[:, :, :8].mean(1)
    mean = mean - mean.max(1, keepdims=True)
    p = np.exp(mean)
    return p / p.sum(1, keepdims=True)


def finetune(grey, labels, train_idx, val_idx, seed: int, args, log) -> tuple[torch.nn.Module, list[dict]]:
    """Train on the training clips' frames; keep the epoch with the best validation clip accuracy (then log-likelihood)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = eight_way(load_fer("fer2013")[0]).to(memory_format=torch.channels_last)
    stem = [model.conv1, model.bn1, model.conv2, model.bn2]
    for module in stem:
        for p in module.parameters():
            p.requires_grad = False
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = -(-len(train_idx) * args.frames_per_epoch // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=steps_per_epoch * args.epochs,
                                                   pct_start=0.15)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    history, best = [], None
    for epoch in range(args.epochs):
        t0 = time.time()
        model.train()
        for module in stem:
            module.eval()
        frames = np.stack([rng.choice(FRAMES, args.frames_per_epoch, replace=False) for _ in train_idx])
        pairs = np.stack([np.repeat(train_idx, args.frames_per_epoch), frames.reshape(-1)], 1)
        pairs = pairs[rng.permutation(len(pairs))]
        total = 0.0
        for start in range(0, len(pairs), args.batch):
            batch = pairs[start:start + args.batch]
            x = augmented(grey[batch[:, 0], batch[:, 1]], rng, args.strength).contiguous(memory_format=torch.channels_last)
            logits, _ = model(x)
            loss = loss_fn(logits, torch.from_numpy(labels[batch[:, 0]]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss) * len(batch)
        val = clip_logprobs(frame_outputs(model, grey[val_idx], ZOOM, False))
        acc, loglik = score(val, labels[val_idx])
        history.append({"epoch": epoch + 1, "train_loss": round(total / len(pairs), 4), "val": round(acc, 4),
                        "val_loglik": round(loglik, 4), "seconds": round(time.time() - t0)})
        log(f"  epoch {epoch + 1}: {history[-1]}")
        if best is None or (acc, loglik) > best[0]:
            best = ((acc, loglik), epoch + 1, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    return model.eval(), history, best[1]


def per_frame_average(views: list[np.ndarray], classes: int) -> np.ndarray:
    """(clips, 16, d) outputs of each view -> their average per frame, as the fer encoder's `tta` gives it."""
    stacked = np.stack(views)
    return average_views(stacked.reshape(len(views), -1, stacked.shape[-1]), classes).reshape(stacked.shape[1:])


def clip_features(frames: np.ndarray) -> np.ndarray:
    return pooled("fer", frames)


def fold_parts(fold: int, actors: np.ndarray) -> dict | None:
    split = fold_split("sequential_6x4", fold, actors, 4, 0)
    if split is None:
        return None
    test, val = np.isin(actors, split["test_actors"]), np.isin(actors, split["val_actors"])
    return {"split": split, "masks": {"train": ~test & ~val, "val": val, "test": test}}


def run_fold(fold, grey, pretrained_views, imagenet, labels, actors, args, log, probabilities) -> dict:
    parts = fold_parts(fold, actors)
    masks = parts["masks"]
    y = {p: labels[m] for p, m in masks.items()}
    setting = f"fold{fold}_e{args.epochs}_f{args.frames_per_epoch}_b{args.batch}_lr{args.lr}_s{args.strength}"
    cache = args.cache / setting if args.cache else None

    def train():
        model, history, epoch = finetune(grey, labels, np.flatnonzero(masks["train"]), np.flatnonzero(masks["val"]),
                                         seed=fold, args=args, log=log)
        views_ = {"plain": frame_outputs(model, grey, ZOOM, False), "flip": frame_outputs(model, grey, ZOOM, True)}
        return np.stack([views_["plain"], views_["flip"]]), history, epoch

    if cache and (cache / "ft_views.npy").is_file():
        ft_views = np.load(cache / "ft_views.npy")
        meta = json.loads((cache / "ft_meta.json").read_text())
    else:
        t0 = time.time()
        ft_views, history, epoch = train()
        meta = {"history": history, "epoch": epoch, "seconds": round(time.time() - t0)}
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
            np.save(cache / "ft_views.npy", ft_views)
            (cache / "ft_meta.json").write_text(json.dumps(meta))
    log(f"fold {fold}: fine-tuned, epoch {meta['epoch']} kept ({meta['seconds']} s)")
    classes = len(FER_CLASSES)
    frames = {"fer": pretrained_views[(ZOOM, False)],
              "fer_flip": per_frame_average([pretrained_views[(ZOOM, f)] for f in (False, True)], classes),
              "fer_flip_zoom": per_frame_average(list(pretrained_views.values()), classes),
              "ft_lr": ft_views[0], "ft_lr_flip": per_frame_average(list(ft_views), 8)}
    inputs = {name: clip_features(v) for name, v in frames.items()}
    inputs["imagenet"] = imagenet
    out = {"fold": fold, **parts["split"], "finetune": meta, "branches": {}, "video": {}}
    for protocol in PROTOCOLS:
        found = {}
        for name, x in inputs.items():
            def fit(x=x):
                part = {p: {"x": x[m], "actors": actors[m]} for p, m in masks.items()}
                xtr, xva, xte = views(part["train"], part["val"], part["test"], protocol)
                return branch_on_val(xtr, y["train"], xva, y["val"], xte)

            key = f"branch-{fold}-{protocol}-{name}" + (f"-{setting}" if name.startswith("ft") else "")
            found[name] = cached(args.cache, key, fit)
        if protocol == SINGLE_CLIP:
            for name, v in (("ft_mean", ft_views[0]), ("ft_mean_flip", frames["ft_lr_flip"])):
                found[name] = {"C": None, **{p: clip_logprobs(v[masks[p]]) for p in ("val", "test")}}
        for name in (v for v in VARIANTS if v in found):
            fusion = fit_calibrated([found[name]["val"], found["imagenet"]["val"]], y["val"])
            fused = {p: fuse_calibrated([found[name][p], found["imagenet"][p]], fusion) for p in ("val", "test")}
            out["branches"].setdefault(name, {})[protocol] = {
                "C": found[name]["C"], "val": round(score(found[name]["val"], y["val"])[0], 4),
                "test": round(score(found[name]["test"], y["test"])[0], 4)}
            out["video"].setdefault(name, {})[protocol] = {
                "val": round(score(fused["val"], y["val"])[0], 4), "test": round(score(fused["test"], y["test"])[0], 4),
                "weights": [round(w, 3) for w in fusion["weights"]]}
            for p in ("val", "test"):
                probabilities.setdefault(name, {})[f"f{fold}_{protocol}_{p}"] = fused[p].astype(np.float32)
                probabilities.setdefault(f"{name}_alone", {})[f"f{fold}_{protocol}_{p}"] = found[name][p].astype(np.float32)
        log(f"fold {fold} {protocol}: " + ", ".join(
            f"{n} val {r[protocol]['val']:.3f} test {r[protocol]['test']:.3f}" for n, r in out["branches"].items()
            if protocol in r))
        log(f"fold {fold} {protocol} +imagenet: " + ", ".join(
            f"{n} val {r[protocol]['val']:.3f} test {r[protocol]['test']:.3f}" for n, r in out["video"].items()
            if protocol in r))
    return out


def stats(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)), 4),
            "folds": [round(float(v), 4) for v in values]}


def summary(folds: list[dict]) -> dict:
    out = {}
    for kind in ("branches", "video"):
        out[kind] = {}
        for name in VARIANTS:
            for protocol in PROTOCOLS:
                rows = [f[kind][name][protocol] for f in folds if protocol in f[kind].get(name, {})]
                if len(rows) != len(folds):
                    continue
                base = [f[kind]["fer"][protocol] for f in folds]
                out[kind].setdefault(name, {})[protocol] = {
                    "val": stats([r["val"] for r in rows]), "test": stats([r["test"] for r in rows]),
                    "val_gain": stats([r["val"] - b["val"] for r, b in zip(rows, base)]),
                    "test_gain": stats([r["test"] - b["test"] for r, b in zip(rows, base)]),
                    "folds_val_better": int(sum(r["val"] > b["val"] for r, b in zip(rows, base)))}
    return out


def markdown(summary: dict) -> str:
    lines = ["| branch | protocol | validation WA | test WA | validation gain | test gain | folds better on val |",
             "|---|---|---|---|---|---|---|"]
    for kind, suffix in (("branches", ""), ("video", " + imagenet")):
        for name, rows in summary[kind].items():
            for protocol, r in rows.items():
                lines.append(f"| {name}{suffix} | {protocol} | {fmt(r['val'])} | {fmt(r['test'])} | "
                             f"{r['val_gain']['mean']:+.3f} | {r['test_gain']['mean']:+.3f} | {r['folds_val_better']}/5 |")
    return "\n".join(lines)


def cost_per_clip(grey: np.ndarray) -> dict:
    """ms per clip (16 crops) of the fer encoder on one thread with each TTA_VIEWS set, measured in one run
    (none measured first and last: the spread shows the machine's noise)."""
    model, _ = load_fer("fer2013")
    crops = [np.repeat(g[..., None], 3, axis=-1) for g in grey[:20]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    timing = {}
    for name in (*TTA_VIEWS, "none_again"):
        t0 = time.perf_counter()
        for c in crops:
            fer_features(model, c, ZOOM, name.replace("_again", ""))
        timing[name] = round((time.perf_counter() - t0) / len(crops) * 1e3, 1)
    torch.set_num_threads(threads)
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strips", type=Path, required=True, help="the faces stage's strips folder")
    parser.add_argument("--features", type=Path, required=True, help="folder of the encode stages' outputs (imagenet)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--probabilities", type=Path, default=None, help="folder for facetune_<variant>.npz")
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping network outputs between runs")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--frames-per-epoch", type=int, default=8, help="random frames of each training clip an epoch")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--strength", type=float, default=1.0, help="augmentation strength (1: zoom ±10 %%, "
                        "rotation ±10°, shift ±5 %%, brightness/contrast ±0.2)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    started = time.time()

    def log(line):
        print(f"[{time.time() - started:6.0f} s] {line}", flush=True)

    imagenet_by_clip = load_input(args.features / "imagenet", "imagenet")
    clips = sorted(c.name[:-4] for c in args.strips.glob("*.jpg") if c.name[:-4] in imagenet_by_clip)
    ids = [parse_clip_id(c + ".mp4") for c in clips]
    labels = np.array([i.emotion - 1 for i in ids])
    actors = np.array([i.actor for i in ids])
    imagenet = np.stack([imagenet_by_clip[c] for c in clips])
    grey = load_grey(args.strips, clips)
    log(f"{len(clips)} clips, crops {grey.shape}")
    cost = cost_per_clip(grey)
    log(f"cost per clip, one thread (ms): {cost}")
    pretrained, _ = load_fer("fer2013")
    pretrained = pretrained.to(memory_format=torch.channels_last)
    pretrained_views = {(z, f): cached_array(args.cache, f"pretrained_z{z}_{'flip' if f else 'plain'}",
                                             lambda z=z, f=f: frame_outputs(pretrained, grey, z, f))
                        for z in ZOOMS for f in (False, True)}
    log("pretrained views done")
    probabilities: dict = {}
    with threadpool_limits(limits=1):
        folds = [run_fold(fold, grey, pretrained_views, imagenet, labels, actors, args, log, probabilities)
                 for fold in args.folds]
    result = {"protocol": "sequential_6x4 folds " + ",".join(map(str, args.folds)) + ", 4 validation actors a fold "
              "(cv.seed 0); every choice on validation actors", "clips": len(clips),
              "finetune": {k: getattr(args, k) for k in ("epochs", "frames_per_epoch", "batch", "lr", "strength")},
              "cost_ms_per_clip_one_thread": cost, "summary": summary(folds), "folds": folds,
              "seconds": round(time.time() - started)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.probabilities:
        args.probabilities.mkdir(parents=True, exist_ok=True)
        for name, arrays in probabilities.items():
            np.savez(args.probabilities / f"facetune_{name}.npz", clips=np.array(clips), **arrays)
    log(f"written {args.out}")
    print(markdown(result["summary"]))


if __name__ == "__main__":
    main()
