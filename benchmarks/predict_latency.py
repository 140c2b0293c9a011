"""Latency of `avemo predict` (avemo.predict) on this machine: seconds per clip and real-time factor of the clip
mode, and input frames per second of the streaming (sliding-window) mode, per model.

    .venv/bin/python benchmarks/predict_latency.py [--videos DIR] [--models-dir DIR] [--models a,b]

Clip mode runs each 720p audio-video clip of DIR (RAVDESS names 01-*) once after one warm-up; streaming
runs over those clips joined into one long video (ffmpeg concat, stream copy). Model and backbone loading
is timed apart (it happens once per process). Prints the figures and a markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from avemo.audio import ffmpeg_exe  # noqa: E402
from avemo.predict import load_predictor, predict_clip, run_stream  # noqa: E402
from avemo.predict.annotate import count_frames  # noqa: E402
from avemo.predict.loading import default_models_dir  # noqa: E402

DEFAULT_VIDEOS = ROOT.parent / "shared" / "ravdess-720p" / "Actor_01"
REFERENCE_CLIP_S = 3.5


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def join_clips(clips: list[Path], out: Path) -> Path:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{c}'\n" for c in clips))
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-c", "copy", str(out)], check=True)
    return out


def clip_seconds(clip: Path) -> float:
    import cv2

    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return count_frames(clip) / fps


def bench_clips(predictor, clips: list[Path]) -> dict:
    predict_clip(clips[0], predictor)  # warm-up: first-call allocations, file cache
    times, durations = [], []
    for clip in clips:
        start = time.perf_counter()
        predict_clip(clip, predictor)
        times.append(time.perf_counter() - start)
        durations.append(clip_seconds(clip))
    rtf = sum(t / d for t, d in zip(times, durations)) / len(times)
    return {"clips": len(clips), "mean_clip_s": sum(durations) / len(durations),
            "seconds_per_clip": sum(times) / len(times), "rtf": rtf, "seconds_per_3_5s": rtf * REFERENCE_CLIP_S}


def bench_stream(predictor, video: Path, window: float, hop: float) -> dict:
    result = run_stream(video, predictor, window_s=window, hop_s=hop)
    return {"frames": result.frames, "video_s": result.frames / result.grid.fps, "seconds": result.seconds,
            "fps": result.fps_processed, "realtime_x": result.fps_processed / result.grid.fps,
            "windows": len(result.windows), "hop_s": result.grid.hop_s}


def cold_cli(clip: Path, models_dir: Path, model: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "avemo.cli", "predict", str(clip), "--model", model, "--models-dir",
                    str(models_dir), "--json"], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--models", default="baseline_whisper_fer_imagenet_late_logreg,av_late_fusion,whisper_linear,"
                                            "fer_linear")
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--hop", type=float, default=0.375)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, as `predict --threads` (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = sorted(args.videos.glob("01-*.mp4"))
    if not clips:
        sys.exit(f"error: {args.videos}: no RAVDESS audio-video clips (01-*.mp4)")
    print(f"cpu: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
          f"threads; load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="avemo-bench-") as tmp:
        long_video = join_clips(clips, Path(tmp) / "joined.mp4")
        print(f"clips: {len(clips)} x 1280x720 from {args.videos}; stream input: {long_video.name}, "
              f"{clip_seconds(long_video):.1f} s, {count_frames(long_video)} frames")
        for name in args.models.split(","):
            start = time.perf_counter()
            predictor = load_predictor(name, args.models_dir)
            predictor.encoders("video"), predictor.encoders("audio")  # weights load once per process
            load_s = time.perf_counter() - start
            clip = bench_clips(predictor, clips)
            stream = bench_stream(predictor, long_video, args.window, args.hop)
            print(f"{name}: load {load_s:.2f} s; clip mode {clip['seconds_per_clip']:.3f} s per "
                  f"{clip['mean_clip_s']:.2f} s clip, real-time factor {clip['rtf']:.3f} "
                  f"({clip['seconds_per_3_5s']:.3f} s per 3.5 s clip); stream {stream['frames']} frames "
                  f"({stream['video_s']:.1f} s, {stream['windows']} windows, hop {stream['hop_s']:.3f} s) in "
                  f"{stream['seconds']:.2f} s = {stream['fps']:.1f} frames/s ({stream['realtime_x']:.2f}x real time)",
                  flush=True)
            rows.append((name, predictor.kind, load_s, clip, stream))
    cold = cold_cli(clips[0], args.models_dir, rows[-1][0])
    print(f"cold CLI run (python start, imports, model and backbone load, one clip): {cold:.2f} s for "
          f"`avemo predict {clips[0].name} --model {rows[-1][0]} --json`")
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print("| model | inputs | load (s) | s per clip (mean 1280x720 clip) | real-time factor | s per 3.5 s clip "
          "| stream frames/s | x real time |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, load_s, clip, stream in rows:
        print(f"| {name} | {kind} | {load_s:.2f} | {clip['seconds_per_clip']:.3f} ({clip['mean_clip_s']:.2f} s) | "
              f"{clip['rtf']:.3f} | {clip['seconds_per_3_5s']:.3f} | {stream['fps']:.1f} | "
              f"{stream['realtime_x']:.2f} |")


if __name__ == "__main__":
    main()
