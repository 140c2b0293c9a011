"""A clip's face crops as one horizontal JPEG strip: what the faces stage stores and every reader of face
crops (encode stages, models on crops, `predict`) reads back."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import VideoError


def save_strip(crops: np.ndarray, path: Path, quality: int = 90) -> None:
    """Store crops as one horizontal JPEG strip (compact and viewable)."""
    from ..io import write_bytes

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
