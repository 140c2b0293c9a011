"""Every Whisper layer (pooled mean || std, as whisper_layers) of other audio windows than the fixed 0.5-3.5 s
cut, for benchmarks/whisper_layers_cv.py (--layers OUT/NAME):
- `whole`: the whole clip (RAVDESS speech clips last 3-5 s; the fixed cut drops the end of most);
- `vad`: from the first to the last speech that silero-vad (the ONNX model faster-whisper ships) finds, with
  0.1 s kept on each side; the fixed window when it finds none;
- `multi`: several windows of `audio.duration_s` (3 s) a hop of 1 s apart, covering the whole clip, each
  encoded and pooled alone, their pooled states averaged: the product's `windows: several`
  (avemo.preprocess.several_windows; its JSON was measured before that function padded clips of 3 s or less to
  one full window, which changes 2 of the 1200 ravdess-lite clips, and in the last bits of float16 others).

    nice -n 10 python benchmarks/whisper_layers_windows.py --wav-dir data/audio/wav --out /tmp/windows [--windows multi]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from avemo.audio import load_wav
from avemo.encoders.whisper_layers import encode_layers, load_whisper_layers
from avemo.io import load_params
from avemo.preprocess import audio_window, several_windows

MARGIN_S = 0.1
HOP_S = 1.0
WINDOWS = ("whole", "vad", "multi")


def speech_span(samples: np.ndarray, rate: int) -> tuple[int, int] | None:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(samples.astype(np.float32), VadOptions(min_silence_duration_ms=300))
    if not spans:
        return None
    margin = int(MARGIN_S * rate)
    return max(0, spans[0]["start"] - margin), min(len(samples), spans[-1]["end"] + margin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wav-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--windows", nargs="+", choices=WINDOWS, default=["whole", "vad"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    audio = load_params()["audio"]
    rate = audio["sample_rate"]
    encoder = load_whisper_layers("base")
    wavs = sorted(args.wav_dir.glob("*.wav"))
    values = {name: [] for name in args.windows}
    lengths = {name: [] for name in args.windows}
    no_speech, started = [], time.time()
    for i, wav in enumerate(wavs):
        samples = load_wav(wav, rate)
        if "vad" in values:
            span = speech_span(samples, rate)
            if span is None:
                no_speech.append(wav.stem)
            vad = samples[span[0]:span[1]] if span else audio_window(samples, audio)
        for name in values:
            if name == "multi":
                parts = several_windows(samples, audio, HOP_S)
                pooled = np.mean([encode_layers(encoder, w[None])[0] for w in parts], axis=0)
                values[name].append(pooled.astype(np.float16))
                lengths[name].append(len(parts))
                continue
            window = samples if name == "whole" else vad
            values[name].append(encode_layers(encoder, window[None])[0].astype(np.float16))
            lengths[name].append(len(window) / rate)
        if i % 100 == 0:
            print(f"{i}/{len(wavs)} {time.time() - started:.0f} s", flush=True)
    for name in values:
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "features.npz", clips=np.array([w.stem for w in wavs]), values=np.stack(values[name]))
        unit = "windows" if name == "multi" else "s"
        (folder / "info.json").write_text(json.dumps({
            "input": "whisper_layers", "window": name, f"mean_{unit}": round(float(np.mean(lengths[name])), 3),
            f"min_{unit}": round(float(np.min(lengths[name])), 3), f"max_{unit}": round(float(np.max(lengths[name])), 3),
            "no_speech": no_speech}, indent=1))
    print(f"done in {time.time() - started:.0f} s; no speech found in {len(no_speech)} clips")


if __name__ == "__main__":
    main()
