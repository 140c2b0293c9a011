"""A stream's results frame by frame: the window nearest each frame, per-frame rows, the labels to draw,
and the one answer aggregated over the frames (`--aggregate vote|sum`)."""
from __future__ import annotations

import numpy as np

from ..errors import StageError
from .annotate import frame_boxes
from .output import aggregate, probability_dict
from .stream import StreamResult


def frame_windows(result: StreamResult) -> list[int | None]:
    """For each frame, the window whose centre is nearest to it (it is also one that contains the frame)."""
    if not result.windows:
        return [None] * result.frames
    centres = np.array([w.centre_s for w in result.windows])
    times = (np.arange(result.frames) + 0.5) / result.grid.fps
    right = np.clip(np.searchsorted(centres, times), 1, len(centres) - 1) if len(centres) > 1 else \
        np.zeros(result.frames, int)
    if len(centres) > 1:
        left = right - 1
        right = np.where(np.abs(times - centres[left]) <= np.abs(centres[right] - times), left, right)
    return right.tolist()


def frame_rows(result: StreamResult) -> list[dict]:
    """Per-frame predictions (the detailed alternative to the window timeline)."""
    rows = []
    for frame, k in enumerate(frame_windows(result)):
        w = result.windows[k] if k is not None else None
        probs = None if w is None or w.probs is None else probability_dict(w.probs, result.classes)
        rows.append({"frame": frame, "time_s": round(frame / result.grid.fps, 3),
                     "window": "" if w is None else w.index, "label": (w.label or "") if w else "",
                     "confidence": None if probs is None else round(w.confidence, 4),
                     **{f"p_{c}": None if probs is None else probs[c] for c in result.classes}})
    return rows


def frame_probabilities(result: StreamResult, rows: list[dict]) -> np.ndarray:
    keep = [r for r in rows if r["confidence"] is not None]
    return np.array([[r[f"p_{c}"] for c in result.classes] for r in keep], dtype=np.float64).reshape(
        len(keep), len(result.classes))


def frame_annotations(result: StreamResult, rows: list[dict]) -> tuple[list, list]:
    labels = []
    for k in frame_windows(result):
        w = result.windows[k] if k is not None else None
        labels.append(("", None) if w is None else (w.text(), w.probs))
    return labels, frame_boxes(result.detections, result.frames)


def main_branch(result: StreamResult) -> str:
    """The branch that answered most windows (audio+video, video or audio)."""
    branches = [w.branch for w in result.windows if w.probs is not None and w.branch]
    return max(set(branches), key=branches.count) if branches else result.kind


def summary(result: StreamResult, rows: list[dict], method: str = "vote") -> dict:
    """The stream's one answer: frame-level predictions aggregated (vote or probability sum)."""
    probs = frame_probabilities(result, rows)
    if len(probs) == 0:
        reasons = sorted({w.status for w in result.windows}) or ["shorter than one window"]
        raise StageError(f"{result.source}: no window could be predicted ({', '.join(reasons)}); "
                         + ("no face was found: add --audio-fallback AUDIO_MODEL when the video has audio"
                            if "no_face" in reasons else "see the notes above"))
    agg = aggregate(probs, method)
    used = sorted({w.model for w in result.windows if w.model})
    detections = list(result.detections.values())
    return {"input": result.source, "mode": "stream", "model": result.model,
            "used_model": ", ".join(used), "fallback": any(w.status == "fallback" for w in result.windows),
            "branch": main_branch(result), "model_info": result.model_info,
            "inputs": result.kind, "label": result.classes[agg["index"]],
            "confidence": round(float(agg["probabilities"][agg["index"]]), 4),
            "probabilities": probability_dict(agg["probabilities"], result.classes),
            "face": None if not detections else {
                "detected": sum(b is not None for b in detections), "sampled": len(detections),
                "detection_rate": round(sum(b is not None for b in detections) / len(detections), 3),
                "frame_size": list(result.frame_size), "fps": round(result.grid.fps, 3)},
            "audio": result.audio, "notes": result.notes, "preprocessing_from": result.preprocessing_from,
            "seconds": round(result.seconds, 3),
            "stream": {"frames": result.frames, "fps": round(result.grid.fps, 3),
                       "window_s": round(result.grid.window_s, 4), "hop_s": round(result.grid.hop_s, 4),
                       "frames_per_window": result.grid.n, "windows": len(result.windows),
                       "windows_by_status": {s: sum(w.status == s for w in result.windows)
                                             for s in sorted({w.status for w in result.windows})},
                       "fps_processed": round(result.fps_processed, 1), "dropped_frames": result.dropped,
                       "aggregate": method, "votes": dict(zip(result.classes, agg["votes"].tolist()))},
            "timeline": [w.row(result.classes) for w in result.windows]}


