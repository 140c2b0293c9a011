"""A clip's face track, the one crop path of the faces stage, `predict` and stream mode: sampled frames ->
the largest face of each with the configured detector (`faces.detector`, Haar when a configuration has no
such key), tracked between sampled frames (`track_step`), the nearest detection for frames without a
face, crops with `margin`, `crop_px` and `align` (avemo.faces.crop.crop_face)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .crop import crop_face
from .decode import read_samples
from .detect import Face, detect_faces, detect_near
from .track import fill_missing_boxes, fill_nearest, track_faces

Detect = Callable[[list[np.ndarray]], list[Face | None]]


@dataclass
class FaceTrack:
    crops: np.ndarray  # (n, size, size, 3) uint8 BGR
    boxes: list  # used box per frame (None = centre crop)
    detected: list[bool]  # a face was found in this frame (in full, or near its predicted box: `tracked`)
    frame_indices: list[int] = field(default_factory=list)
    fps: float = 0.0
    frame_size: tuple[int, int] = (0, 0)  # width, height
    info: dict = field(default_factory=dict)  # frames decoded / declared, detector calls
    landmarks: list = field(default_factory=list)  # per frame: 5 (x, y) points or None (Haar: all None)
    tracked: list[bool] = field(default_factory=list)  # found near the box predicted from two agreeing detections

    @property
    def detection_rate(self) -> float:
        return sum(self.detected) / len(self.detected) if self.detected else 0.0


def find_faces(frames: list[np.ndarray], cfg: dict, detect: Detect | None = None
               ) -> tuple[list[Face | None], list[bool], int]:
    """The face of each sampled frame with the configured detector, tracked (`track_step`, `track_iou`):
    faces, which were found near a predicted box, frames the detector saw in full. `detect` replaces the
    detector's full-frame call (stream mode answers from its own memory for a frame it has seen)."""
    detect = detect or (lambda batch: detect_faces(batch, cfg))
    return track_faces(frames, detect, cfg.get("track_step", 1), cfg.get("track_iou", 0.7),
                       lambda batch, boxes: detect_near(batch, boxes, cfg))


def crops_of(frames: list[np.ndarray], faces: list[Face | None], cfg: dict, tracked=None, calls: int = 0) -> FaceTrack:
    """The crops of the frames around their faces; a frame without one takes the nearest frame's box."""
    boxes = fill_missing_boxes([f.box if f else None for f in faces])
    landmarks = fill_nearest([f.landmarks if f else None for f in faces])
    crops = np.stack([crop_face(f, b, m, cfg) for f, b, m in zip(frames, boxes, landmarks)])
    return FaceTrack(crops, boxes, [f is not None for f in faces], info={"detector_frames": calls},
                     landmarks=landmarks, tracked=list(tracked or [False] * len(frames)))


def crop_frames(frames: list[np.ndarray], cfg: dict) -> FaceTrack:
    """Crops, boxes, detection flags and landmarks of a list of sampled frames (config: params.yaml `faces`)."""
    faces, tracked, calls = find_faces(frames, cfg)
    return crops_of(frames, faces, cfg, tracked, calls)


def crop_faces(video: Path, cfg: dict) -> FaceTrack:
    """The face track of a video file: `faces.n_frames` frames at equal intervals, decoding only those."""
    samples = read_samples(video, cfg["n_frames"])
    frames = samples.frames
    track = crop_frames(frames, cfg)
    crops = track.crops
    if len(frames) < cfg["n_frames"]:  # very short clip: repeat the last frame to keep a fixed shape
        crops = np.concatenate([crops, np.repeat(crops[-1:], cfg["n_frames"] - len(frames), axis=0)])
    height, width = frames[0].shape[:2]
    info = {"decoded_frames": samples.total, "declared_frames": samples.declared, **track.info}
    return FaceTrack(crops, track.boxes, track.detected, samples.indices, samples.fps, (width, height), info,
                     [list(map(list, m)) if m is not None else None for m in track.landmarks], track.tracked)
