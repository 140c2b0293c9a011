"""Video: frames sampled at equal intervals, largest frontal face per frame, square crops with margin."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from .errors import VideoError

DETECT_MAX_SIDE = 480  # detection runs on a frame scaled down to this; crops come from the full frame
_local = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    if not hasattr(_local, "cascade"):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        _local.cascade = cv2.CascadeClassifier(str(path))
        if _local.cascade.empty():
            raise VideoError(f"{path}: OpenCV face cascade missing (need opencv-python-headless 4.x)")
    return _local.cascade


def sample_indices(n_total: int, n: int) -> list[int]:
    """`n` frame indices spread at equal intervals over `n_total` frames (centres of n equal segments)."""
    if n_total <= 0:
        return []
    return [min(n_total - 1, int((i + 0.5) * n_total / n)) for i in range(n)]


def sample_frames(video: Path, n: int) -> tuple[list[np.ndarray], list[int], float]:
    """Decode `video` once and keep `n` frames at equal intervals (BGR), their indices and the fps."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise VideoError(f"{video}: cannot open as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    wanted = set(sample_indices(reported, n))
    kept: dict[int, np.ndarray] = {}
    index = 0
    while capture.grab():
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok:
                kept[index] = frame
        index += 1
    capture.release()
    if index == 0:
        raise VideoError(f"{video}: no decodable frames (corrupt or truncated file)")
    if index != reported or len(kept) < len(wanted):  # frame count was wrong (truncated file): decode again
        return _sample_known_count(video, index, n, fps)
    order = sorted(kept)
    return [kept[i] for i in order], order, fps


def _sample_known_count(video: Path, n_total: int, n: int, fps: float):
    capture = cv2.VideoCapture(str(video))
    wanted = set(sample_indices(n_total, n))
    kept = {}
    for index in range(n_total):
        if not capture.grab():
            break
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok:
                kept[index] = frame
    capture.release()
    if not kept:
        raise VideoError(f"{video}: frames could not be decoded")
    order = sorted(kept)
    return [kept[i] for i in order], order, fps


Box = tuple[int, int, int, int]  # x, y, w, h in full-frame pixels


def detect_largest_face(frame: np.ndarray, scale_factor: float, min_neighbors: int,
                        min_face: float) -> Box | None:
    height, width = frame.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    smallest = max(16, int(min_face * min(gray.shape)))
    faces = _cascade().detectMultiScale(gray, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                        minSize=(smallest, smallest))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return tuple(int(round(v / scale)) for v in (x, y, w, h))


def square_crop(frame: np.ndarray, box: Box | None, margin: float, size: int) -> np.ndarray:
    """Square crop around `box` grown by `margin` on each side (centre crop when box is None),
    padded by edge replication where it leaves the frame, resized to `size`."""
    height, width = frame.shape[:2]
    if box is None:
        side = min(height, width)
        cx, cy = width / 2, height / 2
    else:
        x, y, w, h = box
        side = max(w, h) * (1 + 2 * margin)
        cx, cy = x + w / 2, y + h / 2
    half = int(round(side / 2))
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    pad = max(0, -x0, -y0, x0 + 2 * half - width, y0 + 2 * half - height)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = frame[y0 + pad:y0 + pad + 2 * half, x0 + pad:x0 + pad + 2 * half]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def fill_missing_boxes(boxes: list[Box | None]) -> list[Box | None]:
    """Replace each missing box by the nearest detected one (earlier wins a tie); None if none at all."""
    found = [i for i, b in enumerate(boxes) if b is not None]
    if not found:
        return list(boxes)
    return [b if b is not None else boxes[min(found, key=lambda j: (abs(j - i), j))] for i, b in enumerate(boxes)]


@dataclass
class FaceTrack:
    crops: np.ndarray  # (n, size, size, 3) uint8 BGR
    boxes: list  # used box per frame (None = centre crop)
    detected: list[bool]
    frame_indices: list[int]
    fps: float
    frame_size: tuple[int, int]  # width, height
    info: dict = field(default_factory=dict)

    @property
    def detection_rate(self) -> float:
        return sum(self.detected) / len(self.detected) if self.detected else 0.0


def face_track(frames: list[np.ndarray], cfg: dict) -> tuple[np.ndarray, list, list[bool]]:
    """Crops, used boxes and detection flags for a list of frames (config: params.yaml `faces`)."""
    found = [detect_largest_face(f, cfg["scale_factor"], cfg["min_neighbors"], cfg["min_face"]) for f in frames]
    boxes = fill_missing_boxes(found)
    crops = np.stack([square_crop(f, b, cfg["margin"], cfg["size"]) for f, b in zip(frames, boxes)])
    return crops, boxes, [b is not None for b in found]


def crop_faces(video: Path, cfg: dict) -> FaceTrack:
    frames, indices, fps = sample_frames(video, cfg["n_frames"])
    crops, boxes, detected = face_track(frames, cfg)
    if len(frames) < cfg["n_frames"]:  # very short clip: repeat the last frame to keep a fixed shape
        extra = cfg["n_frames"] - len(frames)
        crops = np.concatenate([crops, np.repeat(crops[-1:], extra, axis=0)])
    height, width = frames[0].shape[:2]
    return FaceTrack(crops, boxes, detected, indices, fps, (width, height))


def save_strip(crops: np.ndarray, path: Path, quality: int = 90) -> None:
    """Store crops as one horizontal JPEG strip (compact and viewable)."""
    from .io import write_bytes

    ok, encoded = cv2.imencode(".jpg", np.concatenate(list(crops), axis=1), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VideoError(f"{path}: JPEG encoding failed")
    write_bytes(path, encoded.tobytes())


def load_strip(path: Path, n_frames: int) -> np.ndarray:
    """Inverse of save_strip: (n, size, size, 3) uint8 BGR."""
    strip = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if strip is None:
        raise VideoError(f"{path}: unreadable face strip")
    return np.stack(np.split(strip, n_frames, axis=1))
