"""Stage encode_video@NAME / encode_audio@NAME: one input encoder over every clip (params features.video.NAME
or features.audio.NAME, and the audio window), written to data/features/NAME/."""
import argparse
from pathlib import Path

from avemo.encoders.encode_clips import run_encode
from avemo.io import load_params
from avemo.entry import run_stage
from avemo.device import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="encoder name (a key of features.video or features.audio)")
    parser.add_argument("--source", type=Path, required=True, help="data/faces (video encoders) or data/audio")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None, help="per-clip cache (data/cache); safe to delete")
    args = parser.parse_args()
    params = load_params()
    device = str(pick_device(params.get("runtime", {}).get("device", "auto")))
    run_stage(lambda: run_encode(args.input, params["features"], params["audio"], args.source, args.out,
                                 args.cache, device))


if __name__ == "__main__":
    main()
