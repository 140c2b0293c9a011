"""Video clip -> face track: `faces.n_frames` frames at equal intervals (decoding only what they need),
the largest face of each with the configured detector (`faces.detector`, Haar when a configuration
has no such key), tracked between sampled frames, square crops with a margin.

The pieces live in avemo.faces (decode, detect, mtcnn, track, crop); this module keeps the names the
rest of the package imports."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .faces.crop import aligned_crop, load_strip, save_strip, square_crop
from .faces.decode import read_samples, sample_frames, sample_indices
from .faces.detect import (DETECT_MAX_SIDE, DETECTORS, Box, Face, detect_face, detect_faces, detect_largest_face,
                           detect_near)
from .faces.track import fill_missing_boxes, fill_nearest, track_faces

__all__ = ["DETECTORS", "DETECT_MAX_SIDE", "Box", "Face", "FaceTrack", "crop_faces", "detect_face", "detect_faces",
           "detect_largest_face", "face_track", "fill_missing_boxes", "load_strip", "sample_frames",
           "sample_indices", "save_strip", "square_crop"]


@dataclass
class FaceTrack:
    crops: np.ndarray  # (n, size, size, 3) uint8 BGR
    boxes: list  # used box per frame (None = centre crop)
    detected: list[bool]  # a face was found in this frame (in full, or near its predicted box: `tracked`)
    frame_indices: list[int]
    fps: float
    frame_size: tuple[int, int]  # width, height
    info: dict = field(default_factory=dict)  # frames decoded / declared, detector calls
    landmarks: list = field(default_factory=list)  # per frame: 5 (x, y) points or None (Haar: all None)
    tracked: list[bool] = field(default_factory=list)  # found near the box predicted from two agreeing detections

    @property
    def detection_rate(self) -> float:
        return sum(self.detected) / len(self.detected) if self.detected else 0.0


def face_track(frames: list[np.ndarray], cfg: dict) -> tuple[np.ndarray, list, list[bool]]:
    """Crops, used boxes and detection flags for a list of frames (config: params.yaml `faces`)."""
    crops, boxes, detected, _, _, _ = _track(frames, cfg)
    return crops, boxes, detected


def _track(frames: list[np.ndarray], cfg: dict):
    faces, tracked, calls = track_faces(frames, lambda batch: detect_faces(batch, cfg),
                                        cfg.get("track_step", 1), cfg.get("track_iou", 0.7),
                                        lambda batch, boxes: detect_near(batch, boxes, cfg))
    boxes = fill_missing_boxes([f.box if f else None for f in faces])
    landmarks = fill_nearest([f.landmarks if f else None for f in faces])
    if cfg.get("align", False):
        crops = [aligned_crop(f, b, m, cfg["margin"], cfg["crop_px"]) for f, b, m in zip(frames, boxes, landmarks)]
    else:
        crops = [square_crop(f, b, cfg["margin"], cfg["crop_px"]) for f, b in zip(frames, boxes)]
    return np.stack(crops), boxes, [f is not None for f in faces], landmarks, tracked, calls


def crop_faces(video: Path, cfg: dict) -> FaceTrack:
    samples = read_samples(video, cfg["n_frames"])
    frames = samples.frames
    crops, boxes, detected, landmarks, tracked, calls = _track(frames, cfg)
    if len(frames) < cfg["n_frames"]:  # very short clip: repeat the last frame to keep a fixed shape
        extra = cfg["n_frames"] - len(frames)
        crops = np.concatenate([crops, np.repeat(crops[-1:], extra, axis=0)])
    height, width = frames[0].shape[:2]
    info = {"decoded_frames": samples.total, "declared_frames": samples.declared, "detector_frames": calls}
    return FaceTrack(crops, boxes, detected, samples.indices, samples.fps, (width, height), info,
                     [list(map(list, m)) if m is not None else None for m in landmarks], tracked)
