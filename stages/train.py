"""Stage 5: train one model (by name, from params.yaml `models`) on the precomputed features."""
import argparse
from pathlib import Path

import _bootstrap  # noqa: F401
from dvclive import Live

from avemo.io import load_params
from avemo.stage import run_stage
from avemo.train import train
from avemo.config import model_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--faces", type=Path, required=True, help="face crops, for models on raw frames")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--live", type=Path, required=True, help="dvclive directory")
    args = parser.parse_args()

    def body():
        cfg = model_config(load_params(), args.model, features=str(args.features), metadata=str(args.metadata),
                           faces=str(args.faces), checkpoint=str(args.checkpoint))
        with Live(str(args.live), save_dvc_exp=False, dvcyaml=False) as live:
            metrics = train(cfg, live)
        print(f"train {args.model}: {metrics}")

    run_stage(body)


if __name__ == "__main__":
    main()
