"""What stream mode's face crops cost since it finds and crops faces by the faces stage's path
(avemo.faces.clip: detector, tracking every `track_step` points, nearest box, align; the stream being the
clip), against the causal path it had before (full detection of every sampled frame, square crop around the
last box found), on the same frames in one run.

    .venv/bin/python benchmarks/stream_crops.py [--videos DIR] [--window 3] [--hop 0.375]

The 720p clips of DIR are joined into one video (as benchmarks/predict_latency.py does), decoded once with
OpenCV as stream mode decodes; both paths then see the same sampled frames. Prints, per path, the seconds
spent detecting and cropping, the frames detected in full, and the crops each path has to embed (a frame
shared by several windows has one crop in both, unless it holds no face and windows differ in the nearest
box it takes)."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from predict_latency import DEFAULT_VIDEOS, join_clips  # noqa: E402

from avemo.faces.crop import square_crop  # noqa: E402
from avemo.faces.detect import detect_faces  # noqa: E402
from avemo.io import load_params  # noqa: E402
from avemo.predict.window import WindowPredictor, make_grid  # noqa: E402


def sampled_frames(video: Path, grid) -> dict[int, object]:
    """Every frame a window of the grid samples, by index, decoded as stream mode decodes (OpenCV)."""
    capture, frames, index, j = cv2.VideoCapture(str(video)), {}, 0, 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if grid.frame(j) <= index:
            frames[index] = frame
            while grid.frame(j) <= index:
                j += 1
        index += 1
    capture.release()
    return frames


def causal_path(frames: dict, cfg: dict) -> tuple[float, int, int]:
    """The earlier stream path: each sampled frame detected in full, cropped around the last box found."""
    start, last = time.perf_counter(), None
    for index in sorted(frames):
        face = detect_faces([frames[index]], cfg)[0]
        last = face.box if face is not None else last
        square_crop(frames[index], last, cfg["margin"], cfg["crop_px"])
    return time.perf_counter() - start, len(frames), len(frames)


def window_path(frames: dict, grid, cfg: dict) -> tuple[float, int, int]:
    """Today's path: each complete window cropped as the faces stage crops a clip of its frames."""
    from types import SimpleNamespace

    import avemo.predict.window as window_module

    detected, embedded = [], {}
    original = window_module.detect_faces
    window_module.detect_faces = lambda batch, c: (detected.extend(id(f) for f in batch), original(batch, c))[1]
    state = WindowPredictor(SimpleNamespace(faces=cfg), grid, None, None, detect=True)
    start = time.perf_counter()
    try:
        for index in sorted(frames):
            state.add_frame(index, frames[index])
        state.tracker.track(lambda j: state.points[j].frame, state.next_j, final=True)
        k = 0
        while list(grid.points(k))[-1] < state.next_j:
            js = list(grid.points(k))
            track = state.window_faces(js)
            for j, crop in zip(js, track.crops):
                embedded.setdefault(j, set()).add(crop.tobytes())
            k += 1
    finally:
        window_module.detect_faces = original
    return time.perf_counter() - start, len(set(detected)), sum(len(v) for v in embedded.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--hop", type=float, default=0.375)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = {k: v for k, v in load_params("faces", ROOT / "params.yaml").items() if k != "workers"}
    clips = sorted(args.videos.glob("01-*.mp4"))
    with tempfile.TemporaryDirectory(prefix="avemo-bench-") as tmp:
        video = join_clips(clips, Path(tmp) / "joined.mp4")
        capture = cv2.VideoCapture(str(video))
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        grid = make_grid(fps, args.window, args.hop, cfg["n_frames"])
        frames = sampled_frames(video, grid)
    detect_faces([frames[min(frames)]], cfg)  # warm-up: the detector's weights load once
    rows = {"causal (before)": causal_path(frames, cfg), "faces stage path (now)": window_path(frames, grid, cfg)}
    print(f"{len(clips)} clips joined, {len(frames)} sampled frames, window {args.window} s, hop {grid.hop_s:.3f} s, "
          f"faces: {cfg['detector']}, track_step {cfg.get('track_step')}, align {cfg.get('align')}")
    print("| path | detect + crop (s) | frames detected in full | crops to embed |")
    print("|---|---|---|---|")
    for name, (seconds, full, crops) in rows.items():
        print(f"| {name} | {seconds:.2f} | {full} | {crops} |")
    base = rows["causal (before)"][0]
    print(f"ratio now / before: {rows['faces stage path (now)'][0] / base:.2f}")


if __name__ == "__main__":
    main()
