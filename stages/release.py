"""Stage release@CONFIGURATION: the default model of `avemo predict` trained on every actor of the data
source, its cross-validated accuracy per branch and calibration, and its model card (avemo/release.py)."""
import argparse
import time
from pathlib import Path

from avemo.io import load_params, write_json
from avemo.release import build_release, release_data, write_release
from avemo.entry import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=Path, nargs="+", required=True,
                        help="the encoders' outputs it reads (data/features/NAME)")
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the model directory (model, card, diagram)")
    parser.add_argument("--metrics", type=Path, required=True, help="the cross-validation figures (JSON)")
    args = parser.parse_args()

    def body():
        params, started = load_params(), time.perf_counter()
        data, infos = release_data(params["release"], args.metadata, args.inputs[0].parent)
        bundle, card = build_release(params, data, infos, params["release"]["folds"])
        write_release(args.out, bundle, card)
        write_json(args.metrics, {k: card[k] for k in ("name", "data", "accuracy")} | {
            "summary": card["cross_validation"]["summary"],
            "ece": {b: {p: {"before": c["before"]["ece"], "after": c["after"]["ece"]} for p, c in by_p.items()}
                    for b, by_p in card["cross_validation"]["reliability"].items()}})
        print(f"release {card['name']}: {card['data']}; single clip WA {card['accuracy']['by_branch']} "
              f"({card['accuracy']['folds']} folds); {time.perf_counter() - started:.0f} s")

    run_stage(body)


if __name__ == "__main__":
    main()
