"""Face detectors behind one interface (params.yaml `faces.detector`):

  mtcnn  MTCNN (avemo/faces/mtcnn.py): a CNN cascade with five landmarks, robust to pose, expression and
         lighting; a batch of frames per call.
  haar   OpenCV's frontal Haar cascade (the original detector): no landmarks, misses turned or
         occluded faces, finds false faces in texture.

Both run on the frame reduced to `detect_size` pixels or less on its longer side (mtcnn: by a whole
factor, OpenCV's fast path; haar: to exactly that size, as it always did) and map the box back to
full-frame pixels; the largest face of a frame is kept. MTCNN's box runs from hairline to chin and is
taller than wide; it is stored as the square of the same centre and area, which frames the face like
Haar's box, so that `faces.margin` means the same for both detectors."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ParamError, VideoError

DETECTORS = ("mtcnn", "haar")
LEGACY_DETECTOR = "haar"  # a configuration without `detector` was written for the Haar-only code
DETECT_MAX_SIDE = 480  # default detect_size: detection runs on a frame scaled down to this
WINDOW = 128  # a tracked face is searched for in a window of 2x its predicted box, scaled to this side
WINDOW_MIN_FACE = 0.25  # ... down to a face a quarter of the window (half the predicted size)
Box = tuple[int, int, int, int]  # x, y, w, h in full-frame pixels
_local = threading.local()


@dataclass(frozen=True)
class Face:
    box: Box
    landmarks: tuple | None = None  # ((x, y) x 5) in full-frame pixels: eyes, nose, mouth corners
    score: float | None = None


def detector_name(cfg: dict) -> str:
    name = cfg.get("detector", LEGACY_DETECTOR)
    if name not in DETECTORS:
        raise ParamError(f"faces.detector: {name!r} is not valid; choose one of: {', '.join(DETECTORS)}")
    return name


def padded_square(frame: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, int, int]:
    """The square of `side` around (cx, cy), padded by edge replication where it leaves the frame, and
    the frame coordinates of its top-left corner."""
    height, width = frame.shape[:2]
    half = max(1, int(round(side / 2)))
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    pad = max(0, -x0, -y0, x0 + 2 * half - width, y0 + 2 * half - height)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return frame[y0 + pad:y0 + pad + 2 * half, x0 + pad:x0 + pad + 2 * half], x0, y0


def downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The frame scaled so that its longer side is at most `max_side`, and the scale (the Haar path)."""
    height, width = frame.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return frame, scale


def shrink(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """The frame reduced by the smallest whole factor k that brings its longer side to `max_side` or less,
    and k. A whole factor takes OpenCV's fast area-averaging path (1280x720 -> 426x240 in ~1.5 ms
    instead of ~5-7 ms for an arbitrary scale); the last k - 1 rows and columns at most are dropped."""
    height, width = frame.shape[:2]
    k = max(1, -(-max(height, width) // max_side))
    if k == 1:
        return frame, 1
    return cv2.resize(frame[:height // k * k, :width // k * k], (width // k, height // k),
                      interpolation=cv2.INTER_AREA), k


# ------------------------------------------------------------------ Haar


def _cascade() -> cv2.CascadeClassifier:
    if not hasattr(_local, "cascade"):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        _local.cascade = cv2.CascadeClassifier(str(path))
        if _local.cascade.empty():
            raise VideoError(f"{path}: OpenCV face cascade missing (need opencv-python-headless 4.x)")
    return _local.cascade


def detect_largest_face(frame: np.ndarray, scale_factor: float, min_neighbors: int, min_face: float,
                        max_side: int = DETECT_MAX_SIDE) -> Box | None:
    """Haar cascade: the largest frontal face of a BGR frame, in full-frame pixels."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    gray, scale = downscale(gray, max_side)
    gray = cv2.equalizeHist(gray)
    smallest = max(16, int(min_face * min(gray.shape)))
    faces = _cascade().detectMultiScale(gray, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                        minSize=(smallest, smallest))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return tuple(int(round(v / scale)) for v in (x, y, w, h))


def _haar(frames: list[np.ndarray], cfg: dict) -> list[Face | None]:
    found = [detect_largest_face(f, cfg["scale_factor"], cfg["min_neighbors"], cfg["min_face"],
                                 cfg.get("detect_size", DETECT_MAX_SIDE)) for f in frames]
    return [Face(box) if box is not None else None for box in found]


# ------------------------------------------------------------------ MTCNN


def _mtcnn(frames: list[np.ndarray], cfg: dict) -> list[Face | None]:
    from .mtcnn import load_mtcnn

    small, factors = zip(*(shrink(frame, cfg.get("detect_size", DETECT_MAX_SIDE)) for frame in frames))
    out: list[Face | None] = [None] * len(frames)
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(small):  # one batch per frame size (a clip has one)
        by_shape.setdefault(image.shape, []).append(i)
    for shape, members in by_shape.items():
        batch = np.stack([small[i] for i in members])[..., ::-1]  # BGR -> RGB
        found = load_mtcnn().detect(batch, cfg["min_face"] * min(shape[:2]))
        for i, (boxes, scores, points) in zip(members, found):
            if len(boxes):
                out[i] = _largest(boxes, scores, points, 1 / factors[i])
    return out


def _largest(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, scale: float) -> Face:
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    k = int(np.argmax(areas))
    x1, y1, x2, y2 = (float(v) / scale for v in boxes[k])
    side = float(np.sqrt(max(x2 - x1, 1.0) * max(y2 - y1, 1.0)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    box = (int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side)))
    marks = tuple((round(float(x) / scale, 1), round(float(y) / scale, 1)) for x, y in points[k])
    return Face(box, marks, round(float(scores[k]), 4))


# ------------------------------------------------------------------ interface


def detect_faces(frames: list[np.ndarray], cfg: dict) -> list[Face | None]:
    """The largest face of each BGR frame (None where none), with `cfg["detector"]` (default haar)."""
    if not frames:
        return []
    return _mtcnn(frames, cfg) if detector_name(cfg) == "mtcnn" else _haar(frames, cfg)


def detect_near(frames: list[np.ndarray], boxes: list[Box], cfg: dict) -> list[Face | None]:
    """The face of each frame near its predicted box (tracking), None where it is not confirmed there.
    mtcnn: O-Net alone on the predicted box (one small network per frame) must see a face whose refined
    box still overlaps the prediction by `track_iou`. haar: the cascade on a window twice the box's
    size scaled to WINDOW pixels. Either costs a small fraction of a full-frame detection."""
    if not frames:
        return []
    return _mtcnn_near(frames, boxes, cfg) if detector_name(cfg) == "mtcnn" else _haar_near(frames, boxes, cfg)


def _mtcnn_near(frames: list[np.ndarray], boxes: list[Box], cfg: dict) -> list[Face | None]:
    from .mtcnn import THRESHOLDS, load_mtcnn

    given = np.array([(x, y, x + w, y + h) for x, y, w, h in boxes], dtype=np.float32)
    refined, scores, points = load_mtcnn().refine(frames, given, bgr=True)  # crops from the full frames
    out: list[Face | None] = []
    for k, box in enumerate(boxes):
        face = _largest(refined[k:k + 1], scores[k:k + 1], points[k:k + 1], 1.0)
        ok = scores[k] > THRESHOLDS[2] and _iou(face.box, box) >= cfg.get("track_iou", 0.7)
        out.append(face if ok else None)
    return out


def _haar_near(frames: list[np.ndarray], boxes: list[Box], cfg: dict) -> list[Face | None]:
    out: list[Face | None] = []
    for frame, (x, y, w, h) in zip(frames, boxes):
        patch, x0, y0 = padded_square(frame, x + w / 2, y + h / 2, 2 * max(w, h))
        scale = WINDOW / patch.shape[0]
        window = cv2.resize(patch, (WINDOW, WINDOW), interpolation=cv2.INTER_AREA)
        found = detect_largest_face(window, cfg["scale_factor"], cfg["min_neighbors"], WINDOW_MIN_FACE, WINDOW)
        out.append(None if found is None else Face((int(round(x0 + found[0] / scale)),
                                                     int(round(y0 + found[1] / scale)),
                                                     int(round(found[2] / scale)), int(round(found[3] / scale)))))
    return out


def _iou(a: Box, b: Box) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - iw * ih
    return iw * ih / union if union > 0 else 0.0


def detect_face(frame: np.ndarray, cfg: dict) -> tuple[Box | None, tuple | None]:
    """One frame: (box or None, landmarks or None) with the configured detector."""
    face = detect_faces([frame], cfg)[0]
    return (face.box, face.landmarks) if face is not None else (None, None)


def prepare(cfg: dict) -> None:
    """Fail early (in the stage's own process, once) when the detector's weights cannot be had."""
    if detector_name(cfg) == "mtcnn":
        from .mtcnn import weight_paths

        weight_paths()
