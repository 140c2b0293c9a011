"""Stage 6: test-set metrics, per-class scores and confusion matrix of one trained model."""
import argparse
from pathlib import Path

import _bootstrap  # noqa: F401
from avemo.evaluate import classification_metrics, write_confusion
from avemo.io import write_json
from avemo.stage import run_stage
from avemo.train import load_checkpoint, predict_proba, prepare


def evaluate(checkpoint: Path, metrics: Path, plots: Path) -> dict:
    model, normalizer, state = load_checkpoint(checkpoint)
    cfg = state["config"]
    _, parts = prepare(cfg)
    test = parts["test"]
    predicted = predict_proba(model, normalizer.tensors(test), "cpu").argmax(1)
    result = {"model": cfg["model"], **classification_metrics(test.labels, predicted),
              "best_epoch": state["epoch"], "weights": state["feature_info"]["weights"],
              "test_actors": sorted(set(int(a) for a in test.actors))}
    write_json(metrics, result)
    write_confusion(test.labels, predicted, plots / "confusion.csv", plots / "confusion.png",
                    f"{cfg['model']}: WA {result['accuracy']:.2f}, UA {result['balanced_accuracy']:.2f}")
    print(f"evaluate {cfg['model']}: WA {result['accuracy']:.4f} UA {result['balanced_accuracy']:.4f} "
          f"macro-F1 {result['macro_f1']:.4f} on {result['n']} test clips")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    args = parser.parse_args()
    run_stage(lambda: evaluate(args.checkpoint, args.metrics, args.plots))


if __name__ == "__main__":
    main()
