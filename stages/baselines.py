"""Stage baselines@FEATURES-CLASSIFIER: a classical classifier on pooled features (grid search cross-validated
by actor on the training actors), scored under both protocols in the format of `evaluate`."""
import argparse
import time
from pathlib import Path

from avemo.baselines.fit import CLASSIFIERS
from avemo.baselines.fit_and_score import run_baseline
from avemo.io import load_params
from avemo.protocols import SINGLE_CLIP, SPEAKER_ADAPTED
from avemo.entry import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True, help="feature set, e.g. whisper_fer_imagenet")
    parser.add_argument("--classifier", choices=list(CLASSIFIERS), required=True)
    parser.add_argument("--inputs", type=Path, nargs="+", required=True,
                        help="the encoders' outputs it reads (data/features/NAME)")
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, default=None,
                        help="CSV of per-clip class probabilities, validation and test (for the ensemble stage)")
    args = parser.parse_args()

    def body():
        params, started = load_params(), time.perf_counter()
        r = run_baseline(params["baselines"], params["split"], params["train_defaults"], args.features,
                         args.classifier, args.metadata, args.metrics, args.model, args.inputs[0].parent,
                         args.predictions)
        print(f"baseline {args.features} {args.classifier}: single clip WA {r[SINGLE_CLIP]['accuracy']:.4f}, "
              f"speaker-adapted WA {r[SPEAKER_ADAPTED]['accuracy']:.4f} on {r[SINGLE_CLIP]['n']} test clips; "
              f"{time.perf_counter() - started:.1f} s")

    run_stage(body)


if __name__ == "__main__":
    main()
