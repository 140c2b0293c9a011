"""Cost per clip, on one CPU thread, of the PyTorch Whisper encoder with every layer (whisper_layers) against
the faster-whisper (CTranslate2) encoder the `whisper` input uses, in one run, alternating clip by clip so that
a busy machine slows both alike. Both through the per-clip path (avemo.preprocess.audio_inputs), one 3 s
window at a time as the encode stages run.

    nice -n 10 python benchmarks/whisper_layers_cost.py --wav-dir data/audio/wav --clips 40
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from avemo.audio import load_wav  # noqa: E402
from avemo.encoders.registry import load_encoder  # noqa: E402
from avemo.io import load_params  # noqa: E402
from avemo.preprocess import audio_inputs, audio_window  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wav-dir", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params()
    audio = params["audio"]
    wavs = sorted(args.wav_dir.glob("*.wav"))[:: max(1, len(list(args.wav_dir.glob("*.wav"))) // args.clips)][:args.clips]
    windows = [audio_window(load_wav(w, audio["sample_rate"]), audio) for w in wavs]
    encoders = {name: load_encoder(name, params["features"]["audio"][name], audio["sample_rate"])
                for name in ("whisper", "whisper_layers")}
    for name, enc in encoders.items():  # warm-up
        audio_inputs(windows[0], {name: enc})
    seconds = {name: [] for name in encoders}
    for window in windows:
        for name, enc in encoders.items():
            start = time.perf_counter()
            audio_inputs(window, {name: enc})
            seconds[name].append(time.perf_counter() - start)
    per_clip = {name: float(np.median(s)) for name, s in seconds.items()}
    result = {"clips": len(windows), "threads": 1, "median_s_per_clip": {k: round(v, 4) for k, v in per_clip.items()},
              "ratio_whisper_layers_to_whisper": round(per_clip["whisper_layers"] / per_clip["whisper"], 2),
              "added_s_for_1200_clips_one_thread": round(1200 * per_clip["whisper_layers"], 1)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
