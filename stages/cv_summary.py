"""Cross-validation summary: mean +- std over the folds of one model (WA, UA, macro-F1, breakdowns)."""
import argparse
from pathlib import Path

from avemo.cv import summarize_dir
from avemo.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=Path, required=True, help="directory of the model's fold*.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    def body():
        s = summarize_dir(args.folds, args.out)
        print(f"cv {s['model']} ({s['scheme']}, {s['folds']} folds): WA {s['accuracy']['mean']:.4f} "
              f"± {s['accuracy']['std']:.4f}, UA {s['balanced_accuracy']['mean']:.4f} "
              f"± {s['balanced_accuracy']['std']:.4f}")

    run_stage(body)


if __name__ == "__main__":
    main()
