"""Benchmark: training samples per second of every model of params.yaml `models` on this machine.

For each model: its configuration exactly as the train stage builds it (avemo.config.model_config),
the same Trainer (avemo.train), on the precomputed features in data/features (+ face crops in
data/faces, metadata in data/raw/metadata.csv), for a few epochs (default 2). Timed: each call of
Trainer.train_epoch (forward, loss, backward, optimiser step, augmentation), not data loading, model
construction or validation. Reported: samples/s of the first epoch (includes warm-up) and of the
last one, time per batch, peak memory. Each model runs in its own Python process, so its peak RSS
is its own and one failing model does not stop the others. The device is `auto` (cuda when present,
else cpu) unless --device says otherwise; models whose params carry `limit_batches` (smoke
configuration of heavy models) train that many batches per epoch, unless --batches overrides it.

  python benchmarks/training.py                              # every model, 2 epochs
  python benchmarks/training.py --models logmel_cnn video_lstm --epochs 1
  python benchmarks/training.py --device cuda --batches 20 --json training.json

Needs data/features (and data/faces, data/raw): make them with `dvc repro features` (from the
embedded sample: minutes on a CPU), or `dvc repro` for the whole pipeline.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HOW_TO_MAKE = ("make the features first: `dvc repro features` in the repository (downloads the embedded "
               "sample, extracts audio, crops faces, computes embeddings), then rerun this benchmark")


def one_model(name: str, args) -> dict:
    """Child process: build the model's Trainer and time its training epochs."""
    import torch

    from avemo.config import model_config
    from avemo.io import load_params
    from avemo import train as training

    params = load_params(path=args.params)
    with tempfile.TemporaryDirectory(prefix="avemo-bench-train-") as scratch:
        cfg = model_config(params, name, features=str(args.features), metadata=str(args.metadata),
                           faces=str(args.faces), checkpoint=str(Path(scratch) / f"{name}.pt"))
        tcfg = cfg["train"]
        tcfg.update(device=args.device, epochs=args.epochs, resume=False)
        if args.batches is not None:
            tcfg["limit_batches"] = args.batches or None
        start = time.perf_counter()
        trainer = training.Trainer(cfg)
        setup_s = time.perf_counter() - start
        device = trainer.device
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        train_n = len(trainer.train_y)
        per_epoch = min(train_n, tcfg["limit_batches"] * tcfg["batch_size"]) if tcfg.get("limit_batches") else train_n
        epochs = []
        for _ in range(args.epochs):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.train_epoch()
            if cuda:
                torch.cuda.synchronize()
            epochs.append(time.perf_counter() - start)
        batches = -(-per_epoch // tcfg["batch_size"])
        return {"model": name, "architecture": cfg["architecture"], "device": str(device),
                "threads": torch.get_num_threads(), "train_clips": train_n, "samples_per_epoch": per_epoch,
                "batch_size": tcfg["batch_size"], "batches_per_epoch": batches,
                "parameters": sum(p.numel() for p in trainer.model.parameters()),
                "setup_s": setup_s, "epoch_s": epochs,
                "first_samples_per_s": per_epoch / epochs[0], "last_samples_per_s": per_epoch / epochs[-1],
                "last_ms_per_batch": 1000 * epochs[-1] / batches,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}


def table(rows: list[dict]) -> str:
    lines = ["| model | architecture | device | params | samples/epoch | batch | epoch 1 samples/s "
             "| last epoch samples/s | ms/batch | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | | | error: {r['error']} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['architecture']} | {r['device']} | {r['parameters'] / 1e6:.2f} M "
                     f"| {r['samples_per_epoch']} | {r['batch_size']} | {r['first_samples_per_s']:.1f} "
                     f"| {r['last_samples_per_s']:.1f} | {r['last_ms_per_batch']:.0f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="names in params.yaml `models` (default: all of them)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per model (default 2)")
    parser.add_argument("--batches", type=int, default=None,
                        help="batches per epoch for every model (0: all); default: each model's limit_batches")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--features", type=Path, default=ROOT / "data" / "features")
    parser.add_argument("--faces", type=Path, default=ROOT / "data" / "faces")
    parser.add_argument("--metadata", type=Path, default=ROOT / "data" / "raw" / "metadata.csv")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per model")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--_one", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._one:  # child: one model, one JSON line
        print(json.dumps(one_model(args._one, args)))
        return

    missing = [p for p in (args.features / "info.json", args.metadata) if not p.exists()]
    if missing:
        print(f"{missing[0]}: not found; {HOW_TO_MAKE}", file=sys.stderr)
        sys.exit(2)
    import yaml

    models = args.models or list(yaml.safe_load(args.params.read_text()).get("models", {}))
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}", flush=True)
    rows = []
    for name in models:
        command = [sys.executable, __file__, "--_one", name, "--epochs", str(args.epochs), "--device", args.device,
                   "--features", str(args.features), "--faces", str(args.faces), "--metadata", str(args.metadata),
                   "--params", str(args.params)]
        if args.batches is not None:
            command += ["--batches", str(args.batches)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            rows.append({"model": name, "error": f"more than {args.timeout:.0f} s"})
            print(f"{name}: more than {args.timeout:.0f} s, skipped", flush=True)
            continue
        if done.returncode != 0:
            last = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no message"]
            rows.append({"model": name, "error": last[0][:160]})
            print(f"{name}: failed: {last[0]}", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name}: {row['samples_per_epoch']} samples/epoch on {row['device']}: "
              f"{', '.join(f'{s:.2f}' for s in row['epoch_s'])} s per epoch -> {row['last_samples_per_s']:.1f} "
              f"samples/s, peak {row['peak_rss_mib']:.0f} MiB", flush=True)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
