"""Markdown comparison table of every evaluated model: `python -m avemo.report [metrics_dir]`."""
from __future__ import annotations

import sys
from pathlib import Path

from .io import read_json


def table(metrics_dir: str | Path = "metrics") -> str:
    rows = ["| model | test WA | test UA | macro-F1 | test clips | best epoch | weights |",
            "|---|---|---|---|---|---|---|"]
    for path in sorted(Path(metrics_dir).glob("*.json")):
        m = read_json(path)
        rows.append(f"| {m['model']} | {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} | {m['macro_f1']:.3f} "
                    f"| {m['n']} | {m.get('best_epoch', '')} | {m.get('weights', '')} |")
    return "\n".join(rows)


def main() -> None:
    print(table(sys.argv[1] if len(sys.argv) > 1 else "metrics"))


if __name__ == "__main__":
    main()
