"""Clip mode: one prediction for a whole file exactly as the pipeline sees a RAVDESS clip (crop_faces' 16
frames, the fixed audio window), with the audio fallback and the errors for a missing face or sound."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StageError
from ..faces.clip import FaceTrack
from .inputs import (AudioTrack, check_input, clip_audio, padding_note, read_audio, read_faces,
                     truncation_note)
from .output import probability_dict
from .predictor import Predictor, needs_modality
from ..protocols import SINGLE_CLIP, SPEAKER_ADAPTED


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
    protocol: str = SINGLE_CLIP  # speaker_adapted with --enroll
    branch: str = ""  # audio+video | video | audio: which inputs answered
    model_info: dict = field(default_factory=dict)  # loading.model_info of the model that answered

    @property
    def label(self) -> str:
        return self.classes[int(np.argmax(self.probs))]

    def as_dict(self) -> dict:
        return {"input": self.input, "mode": "clip", "model": self.model, "used_model": self.used_model,
                "fallback": self.used_model != self.model, "inputs": self.kind, "label": self.label,
                "confidence": round(float(np.max(self.probs)), 4),
                "probabilities": probability_dict(self.probs, self.classes), "protocol": self.protocol,
                "branch": self.branch or self.kind, "model_info": self.model_info,
                "face": self.face, "audio": self.audio,
                "notes": self.notes, "preprocessing_from": self.preprocessing_from,
                "seconds": round(self.seconds, 3)}


def missing_audio_error(path: Path, predictor: Predictor, audio: AudioTrack, models_dir=None) -> StageError:
    """An audio or fusion model given a file without sound (or a silent one)."""
    return StageError(f"{audio.problem(path)}; '{predictor.name}' is {predictor.described} and needs audio; "
                      "use a model that reads video (the default model answers from video alone)")


def no_face_error(path: Path, predictor: Predictor, reason: str, audio: AudioTrack | None, models_dir=None,
                  needs: str = "a face") -> StageError:
    """A video model given a file without a face (or without video): suggests --audio-fallback if it has sound."""
    hint = ""
    if audio is not None and audio.status == "ok":
        hint = ("; the file has audio: add --audio-fallback AUDIO_MODEL to predict from it (the default model "
                "answers from audio alone)")
    return StageError(f"{reason}; '{predictor.name}' is {predictor.described} and needs {needs}{hint}")


def no_face_reason(path: Path, predictor: Predictor, track: FaceTrack | None) -> str:
    return (f"{path}: no face found in any of the {predictor.faces['n_frames']} sampled frames"
            if track is not None else f"{path}: has no video stream (audio only)")


def video_or_fallback(path: Path, predictor: Predictor, fallback: Predictor | None, models_dir):
    """crop_faces for a video model; without a face (or without video), the audio fallback or a clear error.
    Returns the face track, the model to use, the audio already read (or None) and notes."""
    track, video_error = read_faces(path, predictor.faces)
    if track is not None and any(track.detected):
        return track, predictor, None, []
    audio = read_audio(path, (fallback or predictor).sample_rate)
    if track is None and audio.status == "no_audio":
        raise StageError(video_error)  # neither decodable video nor audio
    reason = no_face_reason(path, predictor, track)
    if fallback is None or audio.status != "ok":
        raise no_face_error(path, predictor, reason, audio, models_dir, "a face" if track is not None else "video")
    return track, fallback, audio, [f"{reason}; predicted from audio with '{fallback.name}' (--audio-fallback)"]


def branch_inputs(path: Path, predictor: Predictor):
    """A model with several branches (the release) answers from what the file has: audio and video, video
    only (no audio track or a silent one), audio only (no video stream or no face). Returns (inputs,
    branch, face track or None, audio track, notes)."""
    track, video_error = read_faces(path, predictor.faces)
    audio = read_audio(path, predictor.sample_rate)
    has_face, audible = track is not None and any(track.detected), audio.status == "ok"
    branch = predictor.branch_for(has_face, audible)
    if branch is None:
        if track is None and audio.status == "no_audio":
            raise StageError(video_error)
        missing = [no_face_reason(path, predictor, track)] + ([audio.problem(path)] if not audible else [])
        raise StageError(f"{'; '.join(missing)}: '{predictor.name}' needs a face or audible speech")
    notes = []
    if branch != "audio+video":
        why = audio.problem(path) if branch == "video" else no_face_reason(path, predictor, track)
        notes.append(f"{why}; answered by the {branch} branch of '{predictor.name}'")
    needs = set(predictor.branches[branch])
    inputs = {}
    if needs_modality(needs, "audio"):
        placed, audio.placement = clip_audio(audio.samples, predictor.prep["audio"])
        notes += [n for n in [padding_note(path, audio, audio.placement, predictor.prep["audio"])] if n]
        inputs.update(predictor.audio_inputs(audio.samples, placed))
    if needs_modality(needs, "video"):
        inputs.update(predictor.video_inputs(track.crops))
    notes += [n for n in [truncation_note(path, track, audio)] if n]
    return inputs, branch, track, audio, notes


def face_summary(track: FaceTrack) -> dict:
    return {"detected": int(sum(track.detected)), "sampled": len(track.detected),
            "detection_rate": round(track.detection_rate, 3), "frame_size": list(track.frame_size),
            "fps": round(track.fps, 3)}


def clip_inputs(path: Path, predictor: Predictor, fallback: Predictor | None = None, models_dir=None):
    """A file's model inputs by the pipeline's clip preprocessing: (inputs, the model they are for, the face
    track or None, the audio track or None, notes, the branch of that model that answers)."""
    if len(predictor.branches) > 1:
        inputs, branch, track, audio, notes = branch_inputs(path, predictor)
        return inputs, predictor, track, audio, notes, branch
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
        placed, placement = clip_audio(audio.samples, used.prep["audio"])
        audio.placement = placement
        note = padding_note(path, audio, placement, used.prep["audio"])
        notes += [note] if note else []
        inputs.update(used.audio_inputs(audio.samples, placed))
    if used.uses_video:
        inputs.update(used.video_inputs(track.crops))
    note = truncation_note(path, track, audio)
    notes += [note] if note else []
    return inputs, used, track, audio, notes, used.kind


def predict_clip(path: str | Path, predictor: Predictor, fallback: Predictor | None = None,
                 models_dir: str | Path | None = None, enrolment=None) -> ClipResult:
    """One prediction for the whole file with the pipeline's clip preprocessing; `models_dir` (default:
    loading.default_models_dir()) is only searched for models to suggest in an error. Without `enrolment`
    the single_clip protocol; with it (avemo.predict.enrol.Enrolment of other clips of the same person),
    speaker_adapted."""
    start, path = time.perf_counter(), check_input(path)
    inputs, used, track, audio, notes, branch = clip_inputs(path, predictor, fallback, models_dir)
    stats = None
    if enrolment is not None and used is predictor and enrolment.covers(used.branches[branch]):
        stats = enrolment.inputs
        notes.append(f"speaker adapted: statistics of {enrolment.count} enrolment clip(s) of this person")
    elif enrolment is not None:
        notes.append("enrolment not applied: " + ("the audio fallback model predicted" if used is not predictor
                     else f"no enrolment clip gave the inputs of the {branch} branch") + " (single clip)")
    detections = ({i: b for i, b, d in zip(track.frame_indices, track.boxes, track.detected) if d}
                  if track is not None else {})
    result = ClipResult(str(path), predictor.name, used.name, branch, used.probabilities(inputs, stats, branch),
                        used.classes, face_summary(track) if track is not None else None,
                        audio.summary() if audio else None, notes, detections, inputs,
                        time.perf_counter() - start, used.prep_source, branch=branch, model_info=used.info_for(branch))
    result.protocol = SPEAKER_ADAPTED if stats else SINGLE_CLIP
    return result
