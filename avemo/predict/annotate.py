"""--annotate: the face box, the current label and a bar per class drawn on every frame of the input, written
with cv2.VideoWriter and muxed with the input's first audio stream through the imageio-ffmpeg binary."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import ffmpeg
import numpy as np

from ..audio import ffmpeg_exe
from ..errors import StageError
from ..io import atomic_path, write_error
from .paths import same_file

if TYPE_CHECKING:
    from .clip import ClipResult


def frame_boxes(detections: dict[int, tuple], n_frames: int) -> list:
    """A box for every frame: the last detection at or before it (the first one before any detection)."""
    detections = {i: b for i, b in detections.items() if b is not None}
    if not detections:
        return [None] * n_frames
    order = sorted(detections)
    boxes, current, k = [], detections[order[0]], 0
    for index in range(n_frames):
        while k < len(order) and order[k] <= index:
            current, k = detections[order[k]], k + 1
        boxes.append(current)
    return boxes


def _text(frame, text, origin, scale, thick, colour=(0, 230, 0)) -> None:
    """Text with a dark outline, readable on any background."""
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def draw_overlay(frame: np.ndarray, box, text: str, probs: np.ndarray | None, classes: list[str]) -> np.ndarray:
    """Face box, label/probability above it, and one bar per class on a dark panel at the top left."""
    height = frame.shape[0]
    scale, thick = max(0.35, height / 720), max(1, round(height / 360))
    if box is not None:
        x, y, w, h = box
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 230, 0), thick)
        _text(frame, text, (x, max(int(30 * scale), y - int(10 * scale))), scale, thick)
    elif text:
        _text(frame, text, (int(10 * scale), height - int(12 * scale)), scale, thick)
    if probs is not None:
        row, bar = int(24 * scale), int(110 * scale)
        x1, y1 = min(frame.shape[1], int(250 * scale)), min(height, row * len(classes) + 8)
        panel = frame[:y1, :x1]
        panel[:] = (panel * 0.35).astype(np.uint8)  # darken under the bars
        for i, (name, p) in enumerate(zip(classes, probs)):
            y = 4 + i * row
            cv2.rectangle(frame, (6, y + 3), (6 + max(1, int(bar * float(p))), y + row - 3), (0, 170, 255), -1)
            cv2.putText(frame, f"{name} {p:.2f}", (12 + bar, y + row - 7), cv2.FONT_HERSHEY_SIMPLEX,
                        scale * 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


@lru_cache(maxsize=1)
def has_libx264() -> bool:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return " libx264 " in out


OS_FAILURES = ("No space left on device", "Disk quota exceeded", "File too large", "Permission denied",
               "Read-only file system", "Input/output error")
DISK_CHECK_FRAMES = 30  # frames between checks of the free space while drawing
LOW_SPACE = 1 << 20  # bytes: below this, a failed write is put down to a full disk


def disk_reason(directory: Path) -> str | None:
    """'no space left on device' when `directory`'s file system is (nearly) full, else None."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return None
    return f"no space left on device: {free // 1024} KiB free in {directory}" if free < LOW_SPACE else None


def ffmpeg_reason(stderr: bytes) -> str:
    """The line of ffmpeg's log that says why it failed: an OS error if there is one, else the last line
    other than ffmpeg's closing 'Conversion failed!'."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    for line in lines:
        if any(failure in line for failure in OS_FAILURES):
            return line
    useful = [line for line in lines if line != "Conversion failed!"]
    return useful[-1] if useful else "unknown error"


def mux(video_only: Path, source: Path, out: Path) -> str:
    """Re-encode the drawn frames (H.264 when the ffmpeg binary has libx264) with the source's first audio
    stream (if any) into `out`, atomically. Returns the video codec used."""
    codec = "libx264" if has_libx264() else "copy"
    video = ffmpeg.input(str(video_only)).video
    audio = ffmpeg.input(str(source))["a:0?"]
    options = {"vcodec": codec, "acodec": "aac", "audio_bitrate": "192k", "format": "mp4",
               "movflags": "+faststart"}
    if codec == "libx264":
        options.update(preset="veryfast", crf=20, pix_fmt="yuv420p")
    try:
        with atomic_path(out) as tmp:
            try:
                ffmpeg.output(video, audio, str(tmp), **options).run(cmd=ffmpeg_exe(), capture_stdout=True,
                                                                      capture_stderr=True)
            except ffmpeg.Error as err:
                reason = ffmpeg_reason(err.stderr)
                full = disk_reason(out.parent)
                raise StageError(f"{out}: cannot write the annotated video ({full or reason})") from None
    except OSError as err:
        raise write_error(out, err) from None
    return "h264" if codec == "libx264" else "mp4v"


def stored_frames(video: Path) -> int:
    """Frames a written video holds (its packets; 0 when it cannot be opened)."""
    import av

    try:
        with av.open(str(video)) as container:
            return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
    except (av.error.FFmpegError, OSError, IndexError):
        return 0


def open_writer(raw: Path, fps: float, size: tuple[int, int], out: Path):
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        reason = disk_reason(out.parent) or f"OpenCV's VideoWriter cannot open {raw} for mp4v video"
        raise StageError(f"{out}: cannot write the annotated video ({reason})")
    return writer


def check_written(raw: Path, count: int, out: Path) -> None:
    """cv2.VideoWriter reports no failed write: count the frames that reached the file."""
    stored = stored_frames(raw)
    if stored != count:
        reason = disk_reason(out.parent) or f"OpenCV's VideoWriter stored {stored} of {count} frames in {raw}"
        raise StageError(f"{out}: cannot write the annotated video ({reason})")


def annotate_video(source: str | Path, out: str | Path, labels: list, boxes: list, classes: list[str]) -> dict:
    """Draw box and current label on every frame of `source` into `out` (audio kept). The drawn frames go
    to a temporary folder beside `out`, so that a full disk there is found before the long part.

    labels[i]: (label text, probabilities or None) for frame i; boxes[i]: box or None."""
    source, out = Path(source), Path(out)
    if same_file(out, source):
        raise StageError(f"{out}: the annotated video would overwrite its input")
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    ok, frame = capture.read()
    if not ok:
        raise StageError(f"{source}: no decodable frames to annotate")
    size = (frame.shape[1], frame.shape[0])
    count = 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(prefix=".tmp-avemo-annotate-", dir=out.parent)
    except OSError as err:
        raise write_error(out, err) from None
    with scratch as tmp_dir:
        raw = Path(tmp_dir) / "frames.mp4"
        writer = open_writer(raw, fps, size, out)
        while ok:
            i = min(count, len(labels) - 1)
            text, probs = labels[i] if labels else ("", None)
            writer.write(draw_overlay(frame, boxes[min(count, len(boxes) - 1)] if boxes else None, text, probs,
                                      classes))
            count += 1
            if count % DISK_CHECK_FRAMES == 0 and disk_reason(out.parent):  # VideoWriter.write reports nothing
                check_written(raw, -1, out)
            ok, frame = capture.read()
        writer.release()
        capture.release()
        check_written(raw, count, out)
        codec = mux(raw, source, out)
    return {"path": str(out), "frames": count, "size": list(size), "fps": round(fps, 3), "codec": codec}


def clip_annotations(result: ClipResult, n_frames: int) -> tuple[list, list]:
    text = f"{result.label} {np.max(result.probs):.2f}"
    return [(text, result.probs)] * n_frames, frame_boxes(result.detections, n_frames)


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count
