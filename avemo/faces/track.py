"""Face boxes across a clip's sampled frames: full-frame detection on a subset, a search near the
predicted box on the others, and the nearest detection for frames without a face.

Tracking (`faces.track_step` k > 1): the detector first sees every k-th sampled frame and the last one
in full. Between two such frames whose faces agree (IoU >= `faces.track_iou`), each frame in between
gets a predicted box (linear interpolation) and the detector looks for the face only in a window
twice that box's size (avemo.faces.detect.detect_near: a small fraction of a full-frame detection).
A frame whose window holds no face, and every frame between two anchors that disagree or lack a
face, is detected in full. So a head that turns away and back between two anchors is still followed
(interpolating alone cut such faces in half). k = 1 detects every sampled frame in full."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .detect import Box, Face


def iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when either is None."""
    if a is None or b is None:
        return 0.0
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def fill_missing_boxes(boxes: list[Box | None]) -> list[Box | None]:
    """Replace each missing box by the nearest detected one (earlier wins a tie); None if none at all."""
    return fill_nearest(boxes)


def fill_nearest(values: list) -> list:
    """Each None replaced by the nearest non-None value (earlier wins a tie); unchanged when all are None."""
    found = [i for i, v in enumerate(values) if v is not None]
    if not found:
        return list(values)
    return [v if v is not None else values[min(found, key=lambda j: (abs(j - i), j))] for i, v in enumerate(values)]


def _between(a: Face, b: Face, t: float) -> Box:
    return tuple(int(round(p + (q - p) * t)) for p, q in zip(a.box, b.box))


Detect = Callable[[list[np.ndarray]], list[Face | None]]


def track_faces(frames: list[np.ndarray], detect: Detect, step: int = 1, agree: float = 0.7,
                near: Callable[[list[np.ndarray], list[Box]], list[Face | None]] | None = None
                ) -> tuple[list[Face | None], list[bool], int]:
    """Faces of every frame, which were found by the search near a predicted box (`near`; without it
    the predicted box itself is used), and how many frames the detector saw in full."""
    n = len(frames)
    if step <= 1 or n <= 2:
        return detect(frames), [False] * n, n
    anchors = sorted(set(range(0, n, step)) | {n - 1})
    faces: list[Face | None] = [None] * n
    for i, face in zip(anchors, detect([frames[i] for i in anchors])):
        faces[i] = face
    predicted: dict[int, Box] = {}
    missing: list[int] = []
    for a, b in zip(anchors, anchors[1:]):
        if faces[a] is not None and faces[b] is not None and iou(faces[a].box, faces[b].box) >= agree:
            predicted.update({i: _between(faces[a], faces[b], (i - a) / (b - a)) for i in range(a + 1, b)})
        else:
            missing += range(a + 1, b)
    tracked = [False] * n
    order = sorted(predicted)
    found = near([frames[i] for i in order], [predicted[i] for i in order]) if near and order else \
        [Face(predicted[i]) for i in order]
    for i, face in zip(order, found):
        if face is None:
            missing.append(i)
        else:
            faces[i], tracked[i] = face, True
    if missing:
        missing.sort()
        for i, face in zip(missing, detect([frames[i] for i in missing])):
            faces[i] = face
    return faces, tracked, len(anchors) + len(missing)


def box_stability(boxes: list[Box | None]) -> float | None:
    """Mean IoU of consecutive frames' boxes where both have one (1 = the box never moves)."""
    pairs = [iou(a, b) for a, b in zip(boxes, boxes[1:]) if a is not None and b is not None]
    return float(np.mean(pairs)) if pairs else None
