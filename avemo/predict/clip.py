"""Clip mode: one prediction for a whole file exactly as the pipeline sees a RAVDESS clip (crop_faces' 16
frames, the fixed audio window), with the audio fallback and the errors for a missing face or sound."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StageError
from ..video import FaceTrack
from .inputs import (AudioTrack, check_input, clip_audio, padding_note, read_audio, read_faces,
                     truncation_note)
from .loading import models_of_kind
from .output import probability_dict
from .predictor import Predictor


@dataclass
class ClipResult:
    input: str
    model: str
    used_model: str
    kind: str
    probs: np.ndarray
    classes: list[str]
    face: dict | None = None
    audio: dict | None = None
    notes: list[str] = field(default_factory=list)
    detections: dict = field(default_factory=dict)  # frame index -> detected box (for --annotate)
    inputs: dict = field(default_factory=dict, repr=False)  # the model's unbatched input arrays
    seconds: float = 0.0
    preprocessing_from: str = ""
    protocol: str = "single_clip"  # speaker_adapted with --enroll

    @property
    def label(self) -> str:
        return self.classes[int(np.argmax(self.probs))]

    def as_dict(self) -> dict:
        return {"input": self.input, "mode": "clip", "model": self.model, "used_model": self.used_model,
                "fallback": self.used_model != self.model, "inputs": self.kind, "label": self.label,
                "confidence": round(float(np.max(self.probs)), 4),
                "probabilities": probability_dict(self.probs, self.classes), "protocol": self.protocol,
                "face": self.face, "audio": self.audio,
                "notes": self.notes, "preprocessing_from": self.preprocessing_from,
                "seconds": round(self.seconds, 3)}


def missing_audio_error(path: Path, predictor: Predictor, audio: AudioTrack, models_dir) -> StageError:
    """An audio or fusion model given a file without sound (or a silent one): suggests the video models."""
    others = models_of_kind("video", models_dir)
    hint = f"; use a video model: {', '.join(others)}" if others else "; use a model that reads video"
    return StageError(f"{audio.problem(path)}; '{predictor.name}' is {predictor.described} and needs audio{hint}")


def no_face_error(path: Path, predictor: Predictor, reason: str, audio: AudioTrack | None, models_dir,
                  needs: str = "a face") -> StageError:
    """A video model given a file without a face (or without video): suggests --audio-fallback if it has sound."""
    hint = ""
    if audio is not None and audio.status == "ok":
        others = models_of_kind("audio", models_dir)
        hint = (f"; the file has audio: add --audio-fallback {others[0] if others else 'AUDIO_MODEL'} "
                "to predict from it")
    return StageError(f"{reason}; '{predictor.name}' is {predictor.described} and needs {needs}{hint}")


def video_or_fallback(path: Path, predictor: Predictor, fallback: Predictor | None, models_dir):
    """crop_faces for a video model; without a face (or without video), the audio fallback or a clear error.
    Returns the face track, the model to use, the audio already read (or None) and notes."""
    track, video_error = read_faces(path, predictor.faces)
    if track is not None and any(track.detected):
        return track, predictor, None, []
    audio = read_audio(path, (fallback or predictor).sample_rate)
    if track is None and audio.status == "no_audio":
        raise StageError(video_error)  # neither decodable video nor audio
    reason = (f"{path}: no face found in any of the {predictor.faces['n_frames']} sampled frames"
              if track is not None else f"{path}: has no video stream (audio only)")
    if fallback is None or audio.status != "ok":
        raise no_face_error(path, predictor, reason, audio, models_dir, "a face" if track is not None else "video")
    return track, fallback, audio, [f"{reason}; predicted from audio with '{fallback.name}' (--audio-fallback)"]


def face_summary(track: FaceTrack) -> dict:
    return {"detected": int(sum(track.detected)), "sampled": len(track.detected),
            "detection_rate": round(track.detection_rate, 3), "frame_size": list(track.frame_size),
            "fps": round(track.fps, 3)}


def clip_inputs(path: Path, predictor: Predictor, fallback: Predictor | None = None, models_dir=None):
    """A file's model inputs by the pipeline's clip preprocessing: (inputs, the model they are for, the face
    track or None, the audio track or None, notes)."""
    used, track, audio, notes = predictor, None, None, []
    if predictor.uses_video:
        track, used, audio, notes = video_or_fallback(path, predictor, fallback, models_dir)
    inputs = {}
    if used.uses_audio:
        rate = used.prep["audio"]["sample_rate"]
        if audio is None or audio.rate != rate:
            audio = read_audio(path, rate)
        if audio.status != "ok":
            raise missing_audio_error(path, used, audio, models_dir)
        window, placement = clip_audio(audio.samples, used.prep["audio"])
        audio.placement = placement
        note = padding_note(path, audio, placement, used.prep["audio"])
        notes += [note] if note else []
        inputs.update(used.audio_inputs(window))
    if used.uses_video:
        inputs.update(used.video_inputs(track.crops))
    note = truncation_note(path, track, audio)
    notes += [note] if note else []
    return inputs, used, track, audio, notes


def predict_clip(path: str | Path, predictor: Predictor, fallback: Predictor | None = None,
                 models_dir: str | Path | None = None, enrolment=None) -> ClipResult:
    """One prediction for the whole file with the pipeline's clip preprocessing; `models_dir` (default:
    loading.default_models_dir()) is only searched for models to suggest in an error. Without `enrolment`
    the single_clip protocol; with it (avemo.predict.enrol.Enrolment of other clips of the same person),
    speaker_adapted."""
    start, path = time.perf_counter(), check_input(path)
    inputs, used, track, audio, notes = clip_inputs(path, predictor, fallback, models_dir)
    stats = None
    if enrolment is not None and used is predictor:
        stats = enrolment.inputs
        notes.append(f"speaker adapted: statistics of {enrolment.count} enrolment clip(s) of this person")
    elif enrolment is not None:
        notes.append("enrolment not applied: the audio fallback model predicted (single clip)")
    detections = ({i: b for i, b, d in zip(track.frame_indices, track.boxes, track.detected) if d}
                  if track is not None else {})
    result = ClipResult(str(path), predictor.name, used.name, used.kind, used.probabilities(inputs, stats),
                        used.classes, face_summary(track) if track is not None else None,
                        audio.summary() if audio else None, notes, detections, inputs,
                        time.perf_counter() - start, used.prep_source)
    result.protocol = "speaker_adapted" if stats else "single_clip"
    return result
