"""Cold start of one `avemo predict`: wall time and peak memory of fresh processes, with the import floor.

    nice -n 10 .venv/bin/python benchmarks/predict_cold_start.py CLIP [--model NAME|PATH] [--models-dir DIR]
                                                                  [--runs 3]

Rows (median of --runs fresh processes each): `python -c pass`; `import torch` alone (the floor of any
prediction: every encoder and model is a torch module); `avemo predict --help` (the command's own
imports: lazy, no torch); `avemo predict CLIP --json` (everything: imports, model, encoders' weights, one
clip). Then the packages that `import avemo.predict.clip, avemo.predict.loading` spends the most
time in (`python -X importtime`), and one cold process split into its phases (imports, model, encoders'
weights, first clip, second clip)."""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(command: list[str], runs: int) -> tuple[float, float]:
    """Median wall seconds over `runs` fresh processes, and their largest peak RSS (MiB)."""
    walls, peak = [], 0.0
    for _ in range(runs):
        with tempfile.TemporaryFile() as log:
            start = time.perf_counter()
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log,
                                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
            _, status, usage = os.wait4(process.pid, 0)
            walls.append(time.perf_counter() - start)
            if os.waitstatus_to_exitcode(status) != 0:
                log.seek(0)
                raise SystemExit(f"{' '.join(command)} failed:\n{log.read().decode()[-2000:]}")
        peak = max(peak, usage.ru_maxrss / 1024)
    return statistics.median(walls), peak


PHASES = """
import sys, time
start = time.perf_counter()
import avemo.predict.clip, avemo.predict.loading
imported = time.perf_counter()
from avemo.predict.loading import load_predictor
predictor = load_predictor(sys.argv[1], sys.argv[2] or None)
loaded = time.perf_counter()
predictor.encoders("video"), predictor.encoders("audio")
encoders = time.perf_counter()
avemo.predict.clip.predict_clip(sys.argv[3], predictor)
first = time.perf_counter()
avemo.predict.clip.predict_clip(sys.argv[3], predictor)
second = time.perf_counter()
print(f"{imported - start:.2f} {loaded - imported:.2f} {encoders - loaded:.2f} {first - encoders:.2f} {second - first:.2f}")
"""


def phases(model: str, models_dir: str, clip: str) -> list[float]:
    """Seconds of one cold process: imports, model, encoders' weights, first clip, second clip."""
    done = subprocess.run([sys.executable, "-c", PHASES, model, models_dir, clip], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return [float(x) for x in done.stdout.split()]


def import_top(count: int = 10) -> list[tuple[str, float]]:
    """Packages by import time (s, each module's own time summed per top-level package) on the predict path."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import avemo.predict.clip, avemo.predict.loading"], capture_output=True, text=True)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| *(\S+)", line)
        if match:
            name = match.group(2).split(".")[0]
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
    print("| command | wall (s, median) | peak RSS (MiB) |\n|---|---|---|")
    for name, command in rows:
        wall, peak = timed(command, args.runs)
        print(f"| `{name}` | {wall:.2f} | {peak:.0f} |")
    from avemo.predict.cli import DEFAULT_MODEL

    split = phases(args.model or DEFAULT_MODEL, str(args.models_dir or ""), str(args.clip))
    print("\none cold process (s): imports {:.2f}, model {:.2f}, encoders' weights {:.2f}, first clip {:.2f}, "
          "second clip {:.2f}".format(*split))
    print("\nimport time on the predict path (s, each module's own time summed by package):")
    for name, seconds in import_top():
        print(f"  {name:<24} {seconds:6.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
