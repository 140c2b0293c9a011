"""Stage: openSMILE eGeMAPSv02 functionals (88 per clip) over the audio models' window; clips that are
silent, too short or unreadable there are listed in data/egemaps/report.json, not fatal."""
import argparse
from pathlib import Path

from avemo.classical import run_egemaps
from avemo.io import load_params
from avemo.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--audio", type=Path, required=True, help="output of the extract_audio stage")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    run_stage(lambda: run_egemaps(load_params("audio", args.params), args.audio, args.out))


if __name__ == "__main__":
    main()
