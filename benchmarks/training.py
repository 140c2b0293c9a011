"""Benchmark: training samples per second of every model of params.yaml `models` on this machine.

For each model: its configuration exactly as the train stage builds it (avemo.config.model_config),
the same Trainer (avemo.training.Trainer), on the inputs the model declares (avemo.models.model_inputs):
the encoder outputs in data/features/NAME/ (features.npz + info.json, as the encode_video@NAME and
encode_audio@NAME stages write them) and the face crops in data/faces, with the metadata in
data/raw/metadata.csv, for a few epochs (default 2). Timed: each call of Trainer.train_epoch (the
epoch's input standardisation, forward, loss, backward, optimiser step, augmentation), not data
loading, model construction or validation. Reported: samples/s of the first epoch (includes warm-up)
and of the last one, time per batch, peak memory. Each model runs in its own Python process, so its
peak RSS is its own and one failing model does not stop the others; a model whose inputs are not
there is reported as such and skipped. The device is `auto` (cuda when present, else cpu) unless
--device says otherwise; models whose params carry `limit_batches` (smoke configuration of heavy
models) train that many batches per epoch, unless --batches overrides it.

  python benchmarks/training.py                              # every model, 2 epochs
  python benchmarks/training.py --models whisper_linear fer_linear av_late_fusion --epochs 1
  python benchmarks/training.py --device cuda --batches 20 --json training.json

Needs the inputs of the models timed: `dvc repro` in the repository makes those of the profile's models
(the default profile: Whisper and FER2013 features, ImageNet embeddings, face crops; minutes from the
embedded sample on a CPU); `avemo profile full` then `dvc repro` makes every model's (log-mel, waveform,
SSL encoders...). benchmarks/synthetic_data.py writes random inputs of every kind in the same layout.
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

HOW_TO_MAKE = ("make the inputs first: `dvc repro` in the repository (downloads the embedded sample, extracts "
               "audio, crops faces, runs the encode stages of the profile's models; `avemo profile full` first for "
               "every model's inputs), or benchmarks/synthetic_data.py, then rerun this benchmark")


def input_paths(params: dict, name: str, features: Path, faces: Path) -> list[Path]:
    """The stage outputs model `name` reads, as the train stage gets them: features/NAME for an encoder's
    output, the faces folder for the face crops ('frames')."""
    from avemo.config import model_config
    from avemo.models import model_inputs

    cfg = model_config(params, name)
    return [faces if need == "frames" else features / need for need in model_inputs(cfg["architecture"], cfg["args"])]


def missing_inputs(paths: list[Path], faces: Path) -> list[Path]:
    """The paths among `paths` that do not hold a stage output (tracks.json; features.npz and info.json)."""
    return [p for p in paths if not ((p / "tracks.json").is_file() if p == faces
                                     else (p / "features.npz").is_file() and (p / "info.json").is_file())]


def one_model(name: str, args) -> dict:
    """Child process: build the model's Trainer and time its training epochs."""
    import torch

    from avemo.config import model_config
    from avemo.io import load_params
    from avemo.training import Trainer

    params = load_params(path=args.params)
    inputs = input_paths(params, name, args.features, args.faces)
    with tempfile.TemporaryDirectory(prefix="avemo-bench-train-") as scratch:
        cfg = model_config(params, name, inputs=[str(p) for p in inputs], metadata=str(args.metadata),
                           checkpoint=str(Path(scratch) / f"{name}.pt"))
        cfg["runtime"].update(device=args.device, resume=False)
        tcfg = cfg["train"]
        tcfg["epochs"] = args.epochs
        if args.batches is not None:
            tcfg["limit_batches"] = args.batches or None
        start = time.perf_counter()
        trainer = Trainer(cfg)
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
        trainer.close()
        batches = -(-per_epoch // tcfg["batch_size"])
        return {"model": name, "architecture": cfg["architecture"], "device": str(device),
                "inputs": [str(p) for p in inputs],
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
    parser.add_argument("--features", type=Path, default=ROOT / "data" / "features",
                        help="folder of the encoders' outputs, one NAME/ subfolder each (default data/features)")
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

    from avemo.errors import ParamError
    from avemo.io import load_params

    if not args.metadata.exists():
        print(f"{args.metadata}: not found; {HOW_TO_MAKE}", file=sys.stderr)
        sys.exit(2)
    if not (any(args.features.glob("*/features.npz")) or (args.faces / "tracks.json").is_file()):
        print(f"{args.features}: no encoder output (NAME/features.npz) and no face crops in {args.faces}; "
              f"{HOW_TO_MAKE}", file=sys.stderr)
        sys.exit(2)
    params = load_params(path=args.params)
    models = args.models or list(params.get("models", {}))
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}", flush=True)
    rows = []
    for name in models:
        try:
            absent = missing_inputs(input_paths(params, name, args.features, args.faces), args.faces)
        except ParamError as err:
            rows.append({"model": name, "error": str(err)[:160]})
            print(f"{name}: {err}", flush=True)
            continue
        if absent:
            rows.append({"model": name, "error": f"no input {', '.join(map(str, absent))}"[:160]})
            print(f"{name}: skipped: its input {', '.join(map(str, absent))} is not there", flush=True)
            continue
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
    if any(r.get("error", "").startswith("no input") for r in rows):
        print(f"(skipped models: {HOW_TO_MAKE})")
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
