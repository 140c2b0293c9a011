"""Square face crops, optionally rotated so that the eyes are level (`faces.align`): `crop_face` is the one
rule the faces stage, `predict` and stream mode crop with."""
from __future__ import annotations

import math
import cv2
import numpy as np

from .detect import Box, padded_square


def _region(frame: np.ndarray, box: Box | None, margin: float) -> tuple[float, float, float]:
    height, width = frame.shape[:2]
    if box is None:
        return width / 2, height / 2, min(height, width)
    x, y, w, h = box
    return x + w / 2, y + h / 2, max(w, h) * (1 + 2 * margin)


def square_crop(frame: np.ndarray, box: Box | None, margin: float, size: int) -> np.ndarray:
    """Square crop around `box` grown by `margin` on each side (centre crop when box is None),
    padded by edge replication where it leaves the frame, resized to `size`."""
    crop, _, _ = padded_square(frame, *_region(frame, box, margin))
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def eye_angle(landmarks) -> float:
    """Angle in degrees of the line from the left to the right eye (0 = level)."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def aligned_crop(frame: np.ndarray, box: Box | None, landmarks, margin: float, size: int) -> np.ndarray:
    """square_crop of the frame rotated about the box centre so that the eyes are level (the plain
    square crop without landmarks)."""
    if box is None or landmarks is None:
        return square_crop(frame, box, margin, size)
    cx, cy, side = _region(frame, box, margin)
    outer = int(math.ceil(side * math.sqrt(2))) + 2  # holds the rotated square whatever the angle
    patch, _, _ = padded_square(frame, cx, cy, outer)
    centre = (patch.shape[1] / 2, patch.shape[0] / 2)
    matrix = cv2.getRotationMatrix2D(centre, eye_angle(landmarks), 1.0)
    rotated = cv2.warpAffine(patch, matrix, (patch.shape[1], patch.shape[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    crop, _, _ = padded_square(rotated, centre[0], centre[1], side)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def crop_face(frame: np.ndarray, box: Box | None, landmarks, cfg: dict) -> np.ndarray:
    """The crop of params.yaml `faces` (margin, crop_px, align) around `box` (centre crop when None)."""
    if cfg.get("align", False):
        return aligned_crop(frame, box, landmarks, cfg["margin"], cfg["crop_px"])
    return square_crop(frame, box, cfg["margin"], cfg["crop_px"])
