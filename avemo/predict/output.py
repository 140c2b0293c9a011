"""What predict gives back: probabilities by class name, the frame-level aggregation, the terminal table and
timeline/per-frame files (CSV or JSON)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..aggregate import aggregate as clip_scores
from ..errors import StageError
from ..io import atomic_path, write_error, write_json
from ..protocols import SINGLE_CLIP, SPEAKER_ADAPTED


def probability_dict(probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    return {c: round(float(p), 4) for c, p in zip(classes, probs)}


def aggregate(probs: np.ndarray, method: str = "vote") -> dict:
    """Frame- or window-level probabilities (m, C) -> one class by avemo.aggregate's rule: `sum` (largest
    probability sum) or `vote` (most frequent arg-max; the probability sum breaks ties)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise StageError("nothing to aggregate: no frame has a prediction")
    try:
        index = int(clip_scores(probs, method).argmax())
    except ValueError as err:
        raise StageError(f"aggregate: {err}") from None
    votes = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    return {"index": index, "probabilities": probs.sum(axis=0) / len(probs), "votes": votes, "method": method}


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Rows as JSON (a list) for a .json path, else CSV; written atomically."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        write_json(path, rows)
        return
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(buffer.getvalue())
    except OSError as err:
        raise write_error(path, err) from None


def model_lines(result: dict) -> list[str]:
    """Where the model comes from, its training data, its cross-validated accuracy, the branch that answered."""
    info = result.get("model_info") or {}
    if not info:
        return []
    acc = info.get("accuracy") or {}
    cv = (f"; {acc['folds']}-fold cross-validation by actor: {acc[SINGLE_CLIP]:.3f} single clip"
          + (f", {acc[SPEAKER_ADAPTED]:.3f} speaker adapted" if acc.get(SPEAKER_ADAPTED) is not None else "")
          if acc.get(SINGLE_CLIP) is not None else "; no cross-validated accuracy recorded")
    lines = [f"model file: {info['source']}; trained on {info['data']}{cv}"]
    if result.get("branch"):
        lines.append(f"branch: {result['branch']}")
    if info.get("warning"):
        lines.append(f"WARNING: {info['warning']}")
    return lines


def format_table(result: dict) -> str:
    """The terminal report: what was read, then all class probabilities, largest first."""
    lines = [f"input: {result['input']}",
             f"model: {result['model']} ({result['inputs']}), preprocessing from {result['preprocessing_from']}"]
    lines += model_lines(result)
    if result.get("fallback"):
        lines.append(f"fallback: predicted with '{result['used_model']}'")
    if result.get("face"):
        f = result["face"]
        lines.append(f"face: detected in {f['detected']}/{f['sampled']} sampled frames "
                     f"({f['frame_size'][0]}x{f['frame_size'][1]}, {f['fps']} fps)")
    if result.get("audio"):
        a = result["audio"]
        lines.append(f"audio: {a['status']}" + (f", {a['seconds']} s" if a.get("seconds") else "")
                     + (f", {a['rms_dbfs']} dBFS" if a.get("rms_dbfs") is not None else "")
                     + (f", window from {a['window_start_s']} s with {a['padding_s']} s padding"
                        if a.get("padding_s") else ""))
    if result["mode"] == "stream":
        s = result["stream"]
        lines.append(f"stream: {s['frames']} frames in {s['windows']} windows of {s['window_s']} s every "
                     f"{s['hop_s']} s, {s['fps_processed']} frames/s processed; aggregate: {s['aggregate']}")
    if result.get("enrolment"):
        e = result["enrolment"]
        lines.append(f"protocol: speaker adapted, {e['clips']} enrolment clip(s) of this person"
                     + (f" ({len(e['skipped'])} skipped)" if e["skipped"] else ""))
    elif result["mode"] == "clip":
        lines.append("protocol: single clip (no other clip of this person: --enroll CLIPS adapts to them)")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    lines.append(f"{'emotion':<10} {'probability':>11}")
    for name, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:<10} {p:>11.3f}  {'#' * int(round(p * 40))}")
    lines.append(f"prediction: {result['label']} ({result['confidence']:.3f}) in {result['seconds']:.2f} s")
    return "\n".join(lines)
