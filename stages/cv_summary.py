"""Cross-validation summary: mean +- std over the folds of one model (WA, UA, macro-F1, breakdowns)."""
import argparse
from pathlib import Path

from avemo.cv_summary import summarize_dir
from avemo.entry import run_stage
from avemo.protocols import SINGLE_CLIP, SPEAKER_ADAPTED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=Path, required=True, help="directory of the model's fold*.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    def body():
        s = summarize_dir(args.folds, args.out)
        one, adapted = s[SINGLE_CLIP]["accuracy"], s[SPEAKER_ADAPTED]["accuracy"]
        print(f"cv {s['model']} ({s['scheme']}, {s['folds']} folds): single clip WA {one['mean']:.4f} ± "
              f"{one['std']:.4f}, speaker-adapted WA {adapted['mean']:.4f} ± {adapted['std']:.4f}")

    run_stage(body)


if __name__ == "__main__":
    main()
