"""Cold start of one `avemo predict`: wall time and peak memory of fresh processes, with the import floor.

    nice -n 10 .venv/bin/python benchmarks/predict_cold_start.py CLIP [--model NAME|PATH] [--models-dir DIR]
                                                                  [--runs 3]

Rows (median of --runs fresh processes each): `python -c pass`; `import torch` alone (the floor of any
prediction: every encoder and model is a torch module); `avemo predict --help` (the command's own
imports: lazy, no torch); `avemo predict CLIP --json` (everything: imports, model, encoders' weights, one
clip). Then the packages that `import avemo.predict.clip, avemo.predict.loading` spends the most
time in (`python -X importtime`, cumulative, top level only)."""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(command: list[str], runs: int) -> tuple[float, float]:
    """Median wall seconds over `runs` fresh processes, and their largest peak RSS (MiB)."""
    walls, peak = [], 0.0
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return statistics.median(walls), peak


def import_top(count: int = 10) -> list[tuple[str, float]]:
    """Top-level packages by cumulative import time (s) on the predict path."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import avemo.predict.clip, avemo.predict.loading"], capture_output=True, text=True)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:  # imported at the top level
            name = match.group(3).split(".")[0]
            totals[name] = totals.get(name, 0.0) + int(match.group(1)) / 1e6
    return sorted(totals.items(), key=lambda kv: -kv[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = [*(["--model", args.model] if args.model else []),
             *(["--models-dir", str(args.models_dir)] if args.models_dir else [])]
    rows = [("python -c pass", [sys.executable, "-c", "pass"]),
            ("import torch", [sys.executable, "-c", "import torch"]),
            ("avemo predict --help", [str(BIN / "avemo"), "predict", "--help"]),
            ("avemo predict CLIP --json", [str(BIN / "avemo"), "predict", str(args.clip), "--json", *model])]
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("| command | wall (s, median) | peak RSS (MiB, cumulative max) |\n|---|---|---|")
    for name, command in rows:
        wall, peak = timed(command, args.runs)
        print(f"| `{name}` | {wall:.2f} | {peak:.0f} |")
    print("\nimport time on the predict path (cumulative s, top-level packages):")
    for name, seconds in import_top():
        print(f"  {name:<24} {seconds:6.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
