"""Stage cv_fold@NAME-FOLD: train and test one model or baseline on one speaker-independent fold (params `cv`),
under both protocols."""
import argparse
from pathlib import Path

from avemo.cv import run_fold
from avemo.io import load_params
from avemo.protocols import SINGLE_CLIP, SPEAKER_ADAPTED
from avemo.entry import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="a model of params.yaml models, or a baseline FEATURES-CLASSIFIER")
    parser.add_argument("--fold", type=int, required=True, help="index into the fold list of cv.scheme")
    parser.add_argument("--inputs", nargs="+", required=True, help="the stage outputs it reads")
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for the fold's checkpoint and split")
    parser.add_argument("--metrics", type=Path, required=True, help="the fold's test metrics (JSON)")
    args = parser.parse_args()

    def body():
        r = run_fold(load_params(), args.name, args.fold, args.inputs, args.metadata, args.out, args.metrics)
        print(f"cv {args.name} fold {args.fold}: " + (f"skipped ({r['skipped']})" if "skipped" in r else
              f"single clip WA {r[SINGLE_CLIP]['accuracy']:.4f}, speaker-adapted WA "
              f"{r[SPEAKER_ADAPTED]['accuracy']:.4f} on actors {r['test_actors']}"))

    run_stage(body)


if __name__ == "__main__":
    main()
