"""Full (non-smoke) training runs of chosen models outside DVC, for a GPU machine: the train stage's
configuration (avemo.config.model_config) with `limit_batches` lifted and any `-S key=value` overrides
of params.yaml applied (as `dvc exp run -S` does), the same training loop (avemo.training.train) and the
evaluate stage's metrics (avemo.evaluate.evaluate_checkpoint: both protocols, the enrolment curve).
Writes <out>/<model>.pt, <out>/metrics/<model>.json (evaluate format + wall time and device),
<out>/plots/<model>/, <out>/summary.json and prints a table (test WA, UA, macro-F1 under the headline
single-clip protocol). Same split as params.yaml (test actors 17-20 on ravdess-lite).

  python benchmarks/full_runs.py --data DIR --models r3d_18 plain3d_cnn --out runs \
      -S models.r3d_18.train.epochs=30 -S models.r3d_18.train.batch_size=16

DIR holds what the stages write under data/: features/NAME/ (features.npz, info.json: the encode_video@NAME
and encode_audio@NAME stages), faces/ (strips/, tracks.json, report.json: the faces stage) and metadata.csv
(the download stage's raw/metadata.csv); each model reads the inputs it declares (avemo.models.model_inputs).
`--data data` runs on the repository's own (metadata from data/raw/metadata.csv).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from avemo.protocols import SINGLE_CLIP, SPEAKER_ADAPTED

ROOT = Path(__file__).resolve().parent.parent


def apply_override(params: dict, assignment: str) -> None:
    """`a.b.c=value` (value parsed as YAML) into the nested params dict, like `dvc exp run -S`."""
    key, _, value = assignment.partition("=")
    node, *path = key.split(".")
    target = params
    for part in [node, *path][:-1]:
        target = target.setdefault(part, {})
    target[[node, *path][-1]] = yaml.safe_load(value)


def input_paths(params: dict, name: str, data: Path) -> list[str]:
    """The stage outputs model `name` reads, as the train stage gets them (avemo.pipeline.input_path) but
    under DIR: DIR/features/NAME for an encoder's output, DIR/faces for the face crops ('frames')."""
    from avemo.config import model_config
    from avemo.models import model_inputs

    cfg = model_config(params, name)
    return [str(data / ("faces" if need == "frames" else f"features/{need}"))
            for need in model_inputs(cfg["architecture"], cfg["args"])]


def run(name: str, params: dict, data: Path, out: Path, metadata: Path) -> dict:
    import torch

    from avemo.config import model_config
    from avemo.evaluate import evaluate_checkpoint
    from avemo.training import train

    cfg = model_config(params, name, inputs=input_paths(params, name, data), metadata=str(metadata),
                       checkpoint=str(out / f"{name}.pt"))
    cfg["runtime"].update(resume=False)  # device: params.yaml runtime.device (auto: cuda when present)
    cfg["train"]["limit_batches"] = None
    start = time.perf_counter()
    fit = train(cfg)
    seconds = time.perf_counter() - start
    result = evaluate_checkpoint(out / f"{name}.pt", out / "metrics" / f"{name}.json", out / "plots" / name,
                                 extra={"train_seconds": round(seconds, 1), "fit": fit,
                                        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                                        "train_config": cfg["train"], "args": cfg["args"]},
                                 device="cuda" if torch.cuda.is_available() else "cpu")
    one, adapted = result[SINGLE_CLIP], result[SPEAKER_ADAPTED]
    print(f"{name}: WA {one['accuracy']:.3f} UA {one['balanced_accuracy']:.3f} F1 {one['macro_f1']:.3f} "
          f"(speaker-adapted WA {adapted['accuracy']:.3f}) in {seconds:.0f} s ({fit['epochs_run']} epochs, "
          f"best {fit['best_epoch']})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="holds features/NAME/, faces/, metadata.csv")
    parser.add_argument("--metadata", type=Path,
                        help="the clips' metadata (default: DIR/metadata.csv, else DIR/raw/metadata.csv)")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("-S", dest="overrides", action="append", default=[], help="params override key=value")
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    for assignment in args.overrides:
        apply_override(params, assignment)
    metadata = args.metadata or next((p for p in (args.data / "metadata.csv", args.data / "raw" / "metadata.csv")
                                      if p.exists()), args.data / "metadata.csv")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        try:
            rows.append(run(name, params, args.data, args.out, metadata))
        except Exception as err:  # one failing model must not cost the others' device time
            print(f"{name}: failed: {type(err).__name__}: {err}", flush=True)
            rows.append({"model": name, "error": f"{type(err).__name__}: {err}"})
    print("| model | test WA | test UA | macro-F1 | train s | epochs | device |\n|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | error: {r['error'][:80]} | | | | | |")
        else:
            one = r[SINGLE_CLIP]
            print(f"| {r['model']} | {one['accuracy']:.3f} | {one['balanced_accuracy']:.3f} | {one['macro_f1']:.3f} "
                  f"| {r['train_seconds']:.0f} | {r['fit']['epochs_run']} | {r['gpu'] or 'cpu'} |")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
