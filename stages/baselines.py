"""Stage: one classical baseline (feature set x classifier), grid search cross-validated by actor on the
training actors, test metrics in the format of `evaluate` and the fitted scikit-learn pipeline."""
import argparse
from pathlib import Path

from avemo.classical import CLASSIFIERS, FEATURE_SETS, run_baseline
from avemo.io import load_params
from avemo.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", choices=list(FEATURE_SETS), required=True)
    parser.add_argument("--classifier", choices=list(CLASSIFIERS), required=True)
    parser.add_argument("--egemaps", type=Path, default=None, help="data/egemaps/egemaps.npz")
    parser.add_argument("--video", type=Path, default=None, help="data/features/video.npz")
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, default=None,
                        help="CSV of per-clip class probabilities, validation and test (for the ensemble stage)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    def body():
        section = {name: load_params(name, args.params) for name in ("baselines", "split", "train_defaults")}
        r = run_baseline(section["baselines"], section["split"], section["train_defaults"], args.features,
                         args.classifier, args.metadata, args.metrics, args.model, args.egemaps, args.video,
                         args.predictions)
        print(f"baseline {args.features} {args.classifier}: WA {r['accuracy']:.4f} UA {r['balanced_accuracy']:.4f} "
              f"macro-F1 {r['macro_f1']:.4f} on {r['n']} test clips; best {r['best_params']} "
              f"(CV {r['cv_scoring']} {r['cv_score']:.4f}); {r['seconds']:.1f} s")

    run_stage(body)


if __name__ == "__main__":
    main()
