"""Cost per clip, on one CPU thread, of the PyTorch Whisper encoder with every layer (whisper_layers) against
the faster-whisper (CTranslate2) encoder the `whisper` input uses, in one run, alternating clip by clip so that
a busy machine slows both alike; and whisper_layers on several windows (`windows: several`, 3 s every `hop_s`
over the whole clip) against its fixed 3 s window. All through the per-clip path (avemo.preprocess.audio_inputs),
one clip at a time as the encode stages run.

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
from avemo.preprocess import audio_inputs  # noqa: E402


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
    clips = [load_wav(w, audio["sample_rate"]) for w in wavs]
    layers_cfg = params["features"]["audio"]["whisper_layers"]
    settings = {"whisper": ("whisper", params["features"]["audio"]["whisper"]),
                "whisper_layers_fixed": ("whisper_layers", {**layers_cfg, "windows": "fixed"}),
                "whisper_layers_several": ("whisper_layers", {**layers_cfg, "windows": "several",
                                                              "hop_s": layers_cfg.get("hop_s", 1.0)})}
    encoders = {label: (name, load_encoder(name, cfg, audio["sample_rate"])) for label, (name, cfg) in settings.items()}
    for name, enc in encoders.values():  # warm-up
        audio_inputs(clips[0], audio, {name: enc})
    seconds = {label: [] for label in encoders}
    for samples in clips:
        for label, (name, enc) in encoders.items():
            start = time.perf_counter()
            audio_inputs(samples, audio, {name: enc})
            seconds[label].append(time.perf_counter() - start)
    per_clip = {label: float(np.median(s)) for label, s in seconds.items()}
    result = {"clips": len(clips), "threads": 1, "median_s_per_clip": {k: round(v, 4) for k, v in per_clip.items()},
              "ratio_whisper_layers_fixed_to_whisper": round(per_clip["whisper_layers_fixed"] / per_clip["whisper"], 2),
              "ratio_several_to_fixed": round(per_clip["whisper_layers_several"] / per_clip["whisper_layers_fixed"], 2),
              "s_for_1200_clips_one_thread": {k: round(1200 * v, 1) for k, v in per_clip.items()}}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
