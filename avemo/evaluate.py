"""Stage evaluate@MODEL's work: a checkpoint's test metrics under both protocols, its confusion matrix and
its per-clip probabilities (avemo.metrics formats them as for every other model)."""
from __future__ import annotations

from pathlib import Path

from .io import write_json
from .metrics import protocol_probabilities, protocol_report, write_confusion, write_predictions
from .protocols import PROTOCOLS, SINGLE_CLIP


def evaluate_checkpoint(checkpoint: Path, metrics: Path, plots: Path, extra: dict | None = None,
                        device: str = "cpu", predictions: Path | None = None) -> dict:
    """Test metrics of a checkpoint written by `train` under both protocols (JSON for `dvc metrics`, with
    `extra` fields added), the single-clip confusion matrix (CSV and PNG); with `predictions`, the
    per-clip class probabilities of the validation and test clips under both protocols there
    (`write_predictions`, what the `ensemble` stage combines)."""
    from .training import as_tensors, load_checkpoint, predict_proba
    from .training.dataset import prepare

    model, norm, state = load_checkpoint(checkpoint, device)
    cfg = state["config"]
    _, parts = prepare(cfg)
    test = parts["test"]
    predict = lambda inputs, protocol: predict_proba(model, as_tensors(inputs), device)  # noqa: E731
    probs = protocol_probabilities(predict, norm, test)
    if predictions is not None:
        val = parts["val"]
        val_probs = protocol_probabilities(predict, norm, val, curve=False)
        write_predictions(predictions, {(split, protocol): (part.clips, part.labels, p[protocol])
                                        for split, part, p in (("val", val, val_probs), ("test", test, probs))
                                        for protocol in PROTOCOLS})
    from .modality import modality
    from .models import model_inputs

    inputs = model_inputs(cfg["architecture"], cfg.get("args", {}))
    result = {**protocol_report(cfg["model"], test.clips, test.labels, probs, Path(cfg["metadata"])),
              "modality": modality({name: state["feature_info"][name] for name in inputs}), "inputs": list(inputs),
              "best_epoch": state["epoch"], "normalization": state["normalization"]["mode"],
              "weights": {name: info["weights"] for name, info in state["feature_info"].items() if name != "frames"},
              "test_actors": sorted(set(int(a) for a in test.actors)), **(extra or {})}
    write_json(metrics, result)
    single = result[SINGLE_CLIP]
    write_confusion(test.labels, probs[SINGLE_CLIP].argmax(1), plots / "confusion.csv", plots / "confusion.png",
                    f"{cfg['model']} (single clip): WA {single['accuracy']:.2f}, UA {single['balanced_accuracy']:.2f}")
    return result
