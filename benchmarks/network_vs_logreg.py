"""Networks against logistic regression on the same pooled features (issue 15, item 3).

For each input (the Whisper layers chosen by the training actors, `whisper`'s final layer, `fer`) and each
fold of `sequential_6x4` in the data, three classifiers of the same standardised, pooled features (single-clip
protocol, training statistics only):
- `logreg`: scikit-learn's logistic regression, C chosen on the validation actors (benchmarks/whisper_layers_cv.py);
- `softmax_net`: the same linear model as a torch network (Adam, weight decay, dropout on the input), the
  weight decay, dropout and epoch chosen on the validation actors;
- `mlp`: one hidden layer of 256 units (GELU, dropout), chosen the same way.
Every choice is made on validation accuracy (then log-likelihood); the test actors are scored once.

    nice -n 10 python benchmarks/network_vs_logreg.py --features data/features --cache CACHE \
        --out docs/results/ravdess-lite/network_vs_logreg.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_layers_cv import branch_on_val, fold_parts, load_input, score, views  # noqa: E402

from avemo.ids import parse_clip_id  # noqa: E402
from avemo.protocols import SINGLE_CLIP  # noqa: E402

EPOCHS = 40
WEIGHT_DECAYS = (1e-3, 1e-2)
DROPOUTS = (0.5,)


def train_network(hidden: int, x_train, y_train, x_val, y_val, x_test, weight_decay: float, dropout: float, seed=0):
    """Adam for EPOCHS epochs in batches of 32; the epoch with the best validation (accuracy, log-likelihood)
    gives (its validation score, validation and test probabilities)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    width = x_train.shape[1]
    body = [nn.Dropout(dropout), nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 8)] \
        if hidden else [nn.Dropout(dropout), nn.Linear(width, 8)]
    net = nn.Sequential(*body)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    xt, yt = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train)
    xv, xs = torch.tensor(x_val, dtype=torch.float32), torch.tensor(x_test, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    best = None
    for epoch in range(EPOCHS):
        net.train()
        for batch in torch.randperm(len(xt), generator=generator).split(32):
            optimiser.zero_grad()
            nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
            optimiser.step()
        net.eval()
        with torch.no_grad():
            val, test = net(xv).softmax(1).numpy(), net(xs).softmax(1).numpy()
        key = score(val, y_val)
        if best is None or key > best[0]:
            best = (key, epoch, val, test)
    return {"val_score": best[0], "epoch": best[1], "val": best[2], "test": best[3]}


def network_on_val(hidden: int, x_train, y_train, x_val, y_val, x_test) -> dict:
    best = None
    for wd, dropout in itertools.product(WEIGHT_DECAYS, DROPOUTS):
        found = train_network(hidden, x_train, y_train, x_val, y_val, x_test, wd, dropout)
        if best is None or found["val_score"] > best["val_score"]:
            best = {**found, "weight_decay": wd, "dropout": dropout}
    return best


def run_fold(fold, data, labels, actors, cache) -> dict:
    found = fold_parts(fold, labels, actors, data["whisper_layers"], cache)
    if found is None:
        return {}
    split, parts, y, choice = found
    layers = data["whisper_layers"]
    inputs = {"layers_cv": layers[:, choice["layers"]].reshape(len(layers), -1), "whisper": data["whisper"],
              "fer": data["fer"]}
    out = {"fold": fold, **split, "inputs": {}}
    for name, x in inputs.items():
        part = {p: {"x": x[m], "actors": actors[m]} for p, m in parts.items()}
        xtr, xva, xte = views(part["train"], part["val"], part["test"], SINGLE_CLIP)
        found = {"logreg": branch_on_val(xtr, y["train"], xva, y["val"], xte),
                 "softmax_net": network_on_val(0, xtr, y["train"], xva, y["val"], xte),
                 "mlp": network_on_val(256, xtr, y["train"], xva, y["val"], xte)}
        out["inputs"][name] = {k: {"val": round(score(v["val"], y["val"])[0], 4),
                                   "test": round(score(v["test"], y["test"])[0], 4),
                                   **{s: v[s] for s in ("C", "weight_decay", "dropout", "epoch") if s in v}}
                               for k, v in found.items()}
        print(f"fold {fold} {name}: " + ", ".join(f"{k} val {v['val']:.3f} test {v['test']:.3f}"
                                                  for k, v in out["inputs"][name].items()), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--layers", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None, help="benchmarks/whisper_layers_cv.py's cache (layer choice)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    raw = {"whisper_layers": load_input(args.layers or args.features / "whisper_layers", "whisper_layers")}
    raw.update({n: load_input(args.features / n, n) for n in ("whisper", "fer")})
    clips = sorted(set.intersection(*(set(v) for v in raw.values())))
    data = {n: np.stack([v[c] for c in clips]) for n, v in raw.items()}
    ids = [parse_clip_id(c + ".mp4") for c in clips]
    labels, actors = np.array([i.emotion - 1 for i in ids]), np.array([i.actor for i in ids])
    with threadpool_limits(limits=1):
        folds = [r for f in range(5) if (r := run_fold(f, data, labels, actors, args.cache))]
    summary = {}
    for name in folds[0]["inputs"]:
        for clf in folds[0]["inputs"][name]:
            for part in ("val", "test"):
                values = np.array([f["inputs"][name][clf][part] for f in folds])
                summary.setdefault(name, {}).setdefault(clf, {})[part] = {
                    "mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)), 4)}
    result = {"protocol": "sequential_6x4 folds 0-4, cv.seed 0, single clip; every setting on validation actors",
              "summary": summary, "folds": folds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
