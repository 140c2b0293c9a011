"""Stage ensemble: late fusion of the candidates of run.yaml `run.ensemble` (models and baselines), members
and weights chosen on the validation actors only, per protocol; test metrics in the format of `evaluate`."""
import argparse
from pathlib import Path

from avemo.ensemble import run_ensemble
from avemo.io import load_params
from avemo.entry import run_stage
from avemo.protocols import PROTOCOLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions", type=Path, required=True, help="directory of <name>.csv (metrics/predictions)")
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    parser.add_argument("--run", type=Path, default=Path("run.yaml"), help="what `avemo profile` wrote (candidates)")
    args = parser.parse_args()

    def body():
        candidates = load_params("run", args.run)["ensemble"]["candidates"]
        r = run_ensemble(load_params("ensemble"), candidates, args.predictions,
                         args.metadata, args.metrics, args.plots)
        for protocol in PROTOCOLS:
            p = r[protocol]
            members = ", ".join(f"{name} {weight:.2f}" for name, weight in p["members"].items())
            print(f"ensemble {protocol} ({r['method']}): {members}; val WA {p['val']['accuracy']:.4f}; "
                  f"test WA {p['accuracy']:.4f} UA {p['balanced_accuracy']:.4f} on {p['n']} test clips")

    run_stage(body)


if __name__ == "__main__":
    main()
