"""Cross-validation stage: train and evaluate one model on one speaker-independent fold (params `cv`)."""
import argparse
from pathlib import Path

from avemo.cv import run_fold
from avemo.io import load_params
from avemo.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fold", type=int, required=True, help="index into the fold list of cv.scheme")
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for the fold's checkpoint and split")
    parser.add_argument("--metrics", type=Path, required=True, help="the fold's test metrics (JSON)")
    args = parser.parse_args()

    def body():
        paths = {"features": str(args.features), "metadata": str(args.metadata), "faces": str(args.faces)}
        r = run_fold(load_params(), args.model, args.fold, paths, args.out, args.metrics)
        print(f"cv {args.model} fold {args.fold}: " + (f"skipped ({r['skipped']})" if "skipped" in r else
              f"WA {r['accuracy']:.4f} UA {r['balanced_accuracy']:.4f} on actors {r['test_actors']}"))

    run_stage(body)


if __name__ == "__main__":
    main()
