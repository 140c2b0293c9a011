"""Markdown comparison table of every evaluated model: `python -m avemo.report [metrics_dir]`."""
from __future__ import annotations

import sys
from pathlib import Path

from .io import read_json


def table(metrics_dir: str | Path = "metrics") -> str:
    rows = ["| model | test WA | test UA | macro-F1 | test clips | best epoch (baselines: grid choice; ensemble: "
            "members × weight) | weights |",
            "|---|---|---|---|---|---|---|"]
    # metrics/<model>.json of `evaluate`, metrics/baseline_<features>_<classifier>.json of `baselines` and
    # metrics/ensemble.json of `ensemble`
    for path in sorted(Path(metrics_dir).glob("*.json")):
        m = read_json(path)
        chosen = m.get("best_epoch", ", ".join(f"{k}={v}" for k, v in m.get("best_params", {}).items()))
        if "members" in m:  # the ensemble: its members and weights, chosen on the validation actors
            chosen = ", ".join(f"{name} × {weight:.2f}" for name, weight in m["members"].items())
        rows.append(f"| {m['model']} | {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} | {m['macro_f1']:.3f} "
                    f"| {m['n']} | {chosen} | {m.get('weights', '')} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    metrics_dir = Path(argv[0] if argv else "metrics")
    print(table(metrics_dir))
    if any((metrics_dir / "cv").glob("*.json")):  # cross-validation summaries (stage cv_summary)
        from .cv import table as cv_table

        print(f"\nSpeaker-independent cross-validation (mean ± std over folds):\n\n{cv_table(metrics_dir / 'cv')}")


if __name__ == "__main__":
    main()
