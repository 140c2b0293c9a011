"""Stage: late-fusion ensemble of the models and baselines named in params.yaml `ensemble.candidates`,
members and weights chosen on the validation actors only, test metrics in the format of `evaluate`."""
import argparse
from pathlib import Path

from avemo.ensemble import run_ensemble
from avemo.io import load_params
from avemo.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions", type=Path, required=True, help="directory of <name>.csv (metrics/predictions)")
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    def body():
        r = run_ensemble(load_params("ensemble", args.params), args.predictions, args.metadata, args.metrics,
                         args.plots)
        members = ", ".join(f"{name} {weight:.2f}" for name, weight in r["members"].items())
        print(f"ensemble ({r['method']}): {members}; val WA {r['val']['accuracy']:.4f}; test WA {r['accuracy']:.4f} "
              f"UA {r['balanced_accuracy']:.4f} macro-F1 {r['macro_f1']:.4f} on {r['n']} test clips")

    run_stage(body)


if __name__ == "__main__":
    main()
