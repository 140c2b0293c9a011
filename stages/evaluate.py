"""Stage evaluate@MODEL: test metrics of one trained model under both protocols (single clip, speaker
adapted, the enrolment curve), the single-clip confusion matrix, and its per-clip class probabilities on
the validation and test actors (for the `ensemble` stage)."""
import argparse
from pathlib import Path

from avemo.evaluate import evaluate_checkpoint
from avemo.entry import run_stage
from avemo.protocols import SINGLE_CLIP, SPEAKER_ADAPTED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, default=None,
                        help="CSV of per-clip class probabilities, validation and test (metrics/predictions/MODEL.csv)")
    args = parser.parse_args()

    def body():
        r = evaluate_checkpoint(args.checkpoint, args.metrics, args.plots, predictions=args.predictions)
        one, adapted = r[SINGLE_CLIP], r[SPEAKER_ADAPTED]
        print(f"evaluate {r['model']}: single clip WA {one['accuracy']:.4f} UA {one['balanced_accuracy']:.4f}; "
              f"speaker-adapted WA {adapted['accuracy']:.4f} on {one['n']} test clips")

    run_stage(body)


if __name__ == "__main__":
    main()
