"""Predict emotions in any video, audio file, camera or stream with a checkpoint from models/.

    python -m avemo.predict VIDEO [--model NAME|PATH] [--json] [--annotate OUT.mp4]
                                  [--timeline T.csv|.json] [--per-frame F.csv|.json] [--window S] [--hop S]

Preprocessing is the stages' own code: avemo.video.crop_faces and the faces stage's JPEG strip
(save_strip/load_strip), avemo.audio.extract_audio/load_wav/fix_length/LogMel, avemo.features.embed and
spectrogram_to_image, with the features stage's float16 storage; run with the settings recorded in the
checkpoint (feature_info.preprocessing), or params.yaml's faces/audio/features sections for checkpoints
written before that key existed. Sliding windows and live input live in avemo.stream.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import cv2
import ffmpeg
import numpy as np
import torch

from .aggregate import aggregate as clip_scores
from .audio import LogMel, extract_audio, ffmpeg_exe, fix_length, load_wav
from .features import bgr_to_tensor, embed, load_backbone, spectrogram_to_image
from .ids import EMOTIONS
from .io import atomic_path, load_params, write_json
from .models import model_inputs
from .stage import run_stage
from .errors import StageError, VideoError
from .train import Normalizer, load_checkpoint, predict_proba
from .video import FaceTrack, crop_faces, load_strip, save_strip

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = ROOT / "models"
DEFAULT_PARAMS = ROOT / "params.yaml"
DEFAULT_MODEL = "fusion_concat"
VIDEO_INPUTS = ("video", "frames")  # frame embeddings, face crops (uint8)
AUDIO_INPUTS = ("logmel", "audio_emb", "wave")  # log-mel, spectrogram embedding, fixed-window waveform
MAX_CLIP_S = 10.0  # `--mode auto`: longer files get the sliding-window timeline


# ----------------------------------------------------------------------------------------------- models

def available_models(models_dir: str | Path = DEFAULT_MODELS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(models_dir).glob("*.pt"))


def _available_text(models_dir: Path) -> str:
    names = available_models(models_dir)
    return ", ".join(names) if names else "none (train one with `dvc repro`)"


def resolve_model(model: str | Path, models_dir: str | Path = DEFAULT_MODELS_DIR) -> Path:
    """models/<name>.pt for a bare name, else the checkpoint path itself; a clear error if missing."""
    models_dir, text = Path(models_dir), str(model)
    if text.endswith(".pt") or os.sep in text or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise StageError(f"{path}: checkpoint not found; models in {models_dir}: {_available_text(models_dir)}")
        return path
    path = models_dir / f"{text}.pt"
    if not path.is_file():
        raise StageError(f"model '{text}' not found ({path} does not exist); available models in {models_dir}: "
                         f"{_available_text(models_dir)}")
    return path


def read_checkpoint(path: Path):
    """load_checkpoint with one clear error for any file that is not a checkpoint written by `train`."""
    try:
        return load_checkpoint(path, "cpu")
    except Exception as err:  # torch.load/pickle/state_dict raise many unrelated types for a bad file
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise StageError(f"{path}: not a readable model checkpoint ({type(err).__name__}: {detail})") from None


def preprocessing_of(checkpoint: dict, params_path: str | Path = DEFAULT_PARAMS) -> tuple[dict, str]:
    """The faces/audio/features settings the checkpoint's features were made with, and where they came from."""
    info = checkpoint.get("feature_info") or {}
    if "preprocessing" in info:
        prep = info["preprocessing"]
        return {k: dict(prep[k]) for k in ("faces", "audio", "features")}, "checkpoint"
    params = load_params(path=params_path)
    missing = [k for k in ("faces", "audio", "features") if k not in params]
    if missing:
        raise StageError(f"{params_path}: sections {missing} missing (needed: the checkpoint predates "
                         "feature_info.preprocessing)")
    prep = {k: dict(params[k]) for k in ("faces", "audio", "features")}
    if ":" in str(info.get("weights", "")):  # the backbone actually used beats today's params.yaml
        backbone, weights = info["weights"].split(":", 1)
        prep["features"] = {"backbone": backbone, "weights": "none" if weights == "random-init" else weights}
    return prep, str(params_path)


def expected_shapes(prep: dict) -> dict[str, tuple]:
    """Leading input shapes the preprocessing gives (embedding sizes depend on the backbone: not checked here)."""
    f, a = prep["faces"], prep["audio"]
    length = int(a["duration_s"] * a["sample_rate"])
    return {"video": (f["n_frames"],), "frames": (f["n_frames"], f["size"], f["size"], 3), "wave": (length,),
            "logmel": (a["n_mels"], length // int(a["sample_rate"] * a["hop_ms"] / 1000) + 1)}


def check_shapes(path: Path, shapes: dict, prep: dict, source: str) -> None:
    """Refuse preprocessing that would not give the tensors the model was trained on."""
    problems = []
    for name, expected in expected_shapes(prep).items():
        if name in shapes and tuple(shapes[name][:len(expected)]) != expected:
            problems.append(f"{name} {tuple(shapes[name])} but the preprocessing gives {expected}"
                            + (f" (faces.n_frames={prep['faces']['n_frames']})" if name in VIDEO_INPUTS else ""))
    if problems:
        raise StageError(f"{path}: trained on {'; '.join(problems)} (preprocessing from {source})")


@lru_cache(maxsize=4)
def cached_backbone(name: str, weights: str):
    """load_backbone once per process; seeded as the features stage does, so a random backbone matches."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return load_backbone(name, weights)


def strip_round_trip(crops: np.ndarray) -> np.ndarray:
    """The features stage embeds the crops read back from the faces stage's JPEG strip: do the same."""
    with tempfile.TemporaryDirectory(prefix="avemo-strip-") as tmp:
        path = Path(tmp) / "strip.jpg"
        save_strip(crops, path)
        return load_strip(path, len(crops))


@lru_cache(maxsize=4)
def cached_logmel(sample_rate: int, n_mels: int, n_fft: int, hop_ms: float) -> LogMel:
    return LogMel(sample_rate, n_mels, n_fft, hop_ms)


@dataclass
class Predictor:
    """A loaded checkpoint with the preprocessing it was trained with."""
    name: str
    path: Path
    model: torch.nn.Module
    normalizer: Normalizer
    checkpoint: dict
    prep: dict
    prep_source: str
    needs: tuple[str, ...]

    @property
    def uses_video(self) -> bool:
        return any(n in self.needs for n in VIDEO_INPUTS)

    @property
    def uses_audio(self) -> bool:
        return any(n in self.needs for n in AUDIO_INPUTS)

    @property
    def kind(self) -> str:
        return {(True, True): "audio+video", (True, False): "video", (False, True): "audio"}[
            (self.uses_video, self.uses_audio)]

    @property
    def described(self) -> str:
        return f"{'an' if self.kind.startswith('a') else 'a'} {self.kind} model"

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.get("classes") or EMOTIONS)

    def backbone(self) -> torch.nn.Module:
        model, size, _ = cached_backbone(self.prep["features"]["backbone"], str(self.prep["features"]["weights"]))
        for name in ("video", "audio_emb"):
            if name in self.checkpoint["shapes"] and self.checkpoint["shapes"][name][-1] != size:
                raise StageError(f"{self.path}: trained on {name} embeddings of size "
                                 f"{self.checkpoint['shapes'][name][-1]} but {self.prep['features']['backbone']} "
                                 f"gives {size}")
        return model

    def video_inputs(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """(n, size, size, 3) BGR face crops -> the per-frame video inputs this model needs, as the stages
        make them: crops read back from the faces stage's JPEG strip ('frames', uint8) and their
        embeddings stored as float16 ('video', (n, D))."""
        crops = strip_round_trip(crops)
        out = {"frames": crops} if "frames" in self.needs else {}
        if "video" in self.needs:
            out["video"] = embed(self.backbone(), bgr_to_tensor(crops)).astype(np.float16).astype(np.float32)
        return out

    def audio_inputs(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        """Fixed-length samples -> the audio inputs this model needs (waveform, log-mel, spectrogram
        embedding), float16-rounded as the features stage stores them."""
        a, out = self.prep["audio"], {}
        if "wave" in self.needs:
            out["wave"] = samples.astype(np.float16).astype(np.float32)
        if "logmel" in self.needs or "audio_emb" in self.needs:
            logmel = cached_logmel(a["sample_rate"], a["n_mels"], a["n_fft"], a["hop_ms"])(samples)
            logmel = logmel.astype(np.float16).astype(np.float32)
            if "logmel" in self.needs:
                out["logmel"] = logmel
            if "audio_emb" in self.needs:
                emb = embed(self.backbone(), spectrogram_to_image(logmel[None]))[0]
                out["audio_emb"] = emb.astype(np.float16).astype(np.float32)
        return out

    def probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """One clip's inputs (unbatched) -> its class probabilities."""
        arrays = {k: np.asarray(inputs[k]) for k in self.needs}
        batch = SimpleNamespace(inputs={k: (v if v.dtype == np.uint8 else v.astype(np.float32))[None]
                                        for k, v in arrays.items()})
        single = self.checkpoint.get("single_clip_normalizer")
        if single:  # trained with speaker_norm: one clip of an unknown person gets the global statistics
            batch.inputs = {k: t.numpy() for k, t in Normalizer.from_state_dict(single).tensors(batch).items()}
        return predict_proba(self.model, self.normalizer.tensors(batch), torch.device("cpu"))[0]


def load_predictor(model: str | Path, models_dir: str | Path = DEFAULT_MODELS_DIR,
                   params_path: str | Path = DEFAULT_PARAMS) -> Predictor:
    path = resolve_model(model, models_dir)
    net, normalizer, checkpoint = read_checkpoint(path)
    cfg = checkpoint["config"]
    prep, source = preprocessing_of(checkpoint, params_path)
    check_shapes(path, checkpoint["shapes"], prep, source)
    needs = tuple(model_inputs(cfg["architecture"], cfg.get("args", {})))
    if checkpoint.get("single_clip_normalizer"):
        print(f"note: {path.name} was trained with speaker normalisation (train.speaker_norm); a single clip is "
              "normalised with the global training statistics instead, which costs accuracy", file=sys.stderr)
    return Predictor(str(cfg.get("model", path.stem)), path, net, normalizer, checkpoint, prep, source, needs)


def models_of_kind(kind: str, models_dir: str | Path) -> list[str]:
    """Names in models_dir whose inputs are video only / audio only (for suggestions in error messages)."""
    names = []
    for path in sorted(Path(models_dir).glob("*.pt")):
        try:
            cfg = torch.load(path, map_location="cpu", weights_only=False)["config"]
            needs = model_inputs(cfg["architecture"], cfg.get("args", {}))
        except Exception:  # an unreadable neighbour must not hide the real error
            continue
        has_video, has_audio = any(n in needs for n in VIDEO_INPUTS), any(n in needs for n in AUDIO_INPUTS)
        if (kind == "video" and has_video and not has_audio) or (kind == "audio" and has_audio and not has_video):
            names.append(path.stem)
    return names


# ------------------------------------------------------------------------------------------------ inputs

@dataclass
class AudioTrack:
    status: str  # ok | no_audio | silent
    samples: np.ndarray | None
    rate: int
    rms_dbfs: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.samples is None else len(self.samples) / self.rate

    def problem(self, path) -> str:
        if self.status == "no_audio":
            return f"{path}: has no audio stream"
        return f"{path}: audio is silent (RMS {self.rms_dbfs:.1f} dBFS)" if self.status == "silent" else ""

    def summary(self) -> dict:
        return {"status": self.status, "seconds": None if self.seconds is None else round(self.seconds, 3),
                "rms_dbfs": None if self.rms_dbfs is None else round(self.rms_dbfs, 1)}


def check_input(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: input file not found")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise StageError(f"{path}: not a readable file")
    return path


def read_audio(path: Path, sample_rate: int) -> AudioTrack:
    """The extract_audio stage's own code: ffmpeg decode, no-audio/silence rules, 16-bit WAV read back."""
    with tempfile.TemporaryDirectory(prefix="avemo-audio-") as tmp:
        wav = Path(tmp) / "audio.wav"
        result = extract_audio(path, wav, sample_rate)
        if result.status == "failed":
            raise StageError(result.message)
        samples = load_wav(wav, sample_rate) if result.status == "ok" else None
    return AudioTrack(result.status, samples, sample_rate, result.rms_dbfs)


def read_faces(path: Path, faces_cfg: dict) -> tuple[FaceTrack | None, str]:
    """crop_faces, or None and the reason when the file has no decodable video."""
    try:
        return crop_faces(path, faces_cfg), ""
    except VideoError as err:
        return None, str(err)


def clip_audio(samples: np.ndarray, audio_cfg: dict) -> np.ndarray:
    """The pipeline's fixed window: `duration_s` from `offset_s`, zero-padded."""
    rate = audio_cfg["sample_rate"]
    return fix_length(samples, int(audio_cfg["duration_s"] * rate), int(audio_cfg["offset_s"] * rate))


def probability_dict(probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    return {c: round(float(p), 4) for c, p in zip(classes, probs)}


# ------------------------------------------------------------------------------------------- clip mode

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

    @property
    def label(self) -> str:
        return self.classes[int(np.argmax(self.probs))]

    def as_dict(self) -> dict:
        return {"input": self.input, "mode": "clip", "model": self.model, "used_model": self.used_model,
                "fallback": self.used_model != self.model, "inputs": self.kind, "label": self.label,
                "confidence": round(float(np.max(self.probs)), 4),
                "probabilities": probability_dict(self.probs, self.classes), "face": self.face, "audio": self.audio,
                "notes": self.notes, "preprocessing_from": self.preprocessing_from,
                "seconds": round(self.seconds, 3)}


def _missing_audio_error(path: Path, predictor: Predictor, audio: AudioTrack, models_dir) -> StageError:
    others = models_of_kind("video", models_dir)
    hint = f"; use a video model: {', '.join(others)}" if others else "; use a model that reads video"
    return StageError(f"{audio.problem(path)}; '{predictor.name}' is {predictor.described} and needs audio{hint}")


def _no_face_error(path: Path, predictor: Predictor, reason: str, audio: AudioTrack | None, models_dir,
                   needs: str = "a face") -> StageError:
    hint = ""
    if audio is not None and audio.status == "ok":
        others = models_of_kind("audio", models_dir)
        hint = (f"; the file has audio: add --audio-fallback {others[0] if others else 'AUDIO_MODEL'} "
                "to predict from it")
    return StageError(f"{reason}; '{predictor.name}' is {predictor.described} and needs {needs}{hint}")


def video_or_fallback(path: Path, predictor: Predictor, fallback: Predictor | None, models_dir):
    """crop_faces for a video model; without a face (or without video), the audio fallback or a clear error.
    Returns the face track, the model to use, the audio already read (or None) and notes."""
    track, video_error = read_faces(path, predictor.prep["faces"])
    if track is not None and any(track.detected):
        return track, predictor, None, []
    audio = read_audio(path, (fallback or predictor).prep["audio"]["sample_rate"])
    if track is None and audio.status == "no_audio":
        raise StageError(video_error)  # neither decodable video nor audio
    reason = (f"{path}: no face found in any of the {predictor.prep['faces']['n_frames']} sampled frames"
              if track is not None else f"{path}: has no video stream (audio only)")
    if fallback is None or audio.status != "ok":
        raise _no_face_error(path, predictor, reason, audio, models_dir, "a face" if track is not None else "video")
    return track, fallback, audio, [f"{reason}; predicted from audio with '{fallback.name}' (--audio-fallback)"]


def face_summary(track: FaceTrack) -> dict:
    return {"detected": int(sum(track.detected)), "sampled": len(track.detected),
            "detection_rate": round(track.detection_rate, 3), "frame_size": list(track.frame_size),
            "fps": round(track.fps, 3)}


def predict_clip(path: str | Path, predictor: Predictor, fallback: Predictor | None = None,
                 models_dir: str | Path = DEFAULT_MODELS_DIR) -> ClipResult:
    """One prediction for the whole file with the pipeline's clip preprocessing."""
    start, path = time.perf_counter(), check_input(path)
    used, track, audio, notes = predictor, None, None, []
    if predictor.uses_video:
        track, used, audio, notes = video_or_fallback(path, predictor, fallback, models_dir)
    inputs = {}
    if used.uses_audio:
        rate = used.prep["audio"]["sample_rate"]
        if audio is None or audio.rate != rate:
            audio = read_audio(path, rate)
        if audio.status != "ok":
            raise _missing_audio_error(path, used, audio, models_dir)
        inputs.update(used.audio_inputs(clip_audio(audio.samples, used.prep["audio"])))
    if used.uses_video:
        inputs.update(used.video_inputs(track.crops))
    detections = ({i: b for i, b, d in zip(track.frame_indices, track.boxes, track.detected) if d}
                  if track is not None else {})
    return ClipResult(str(path), predictor.name, used.name, used.kind, used.probabilities(inputs), used.classes,
                      face_summary(track) if track is not None else None, audio.summary() if audio else None,
                      notes, detections, inputs, time.perf_counter() - start, used.prep_source)


# ----------------------------------------------------------------------------------------- aggregation

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


# -------------------------------------------------------------------------------------------- annotate

def frame_boxes(detections: dict[int, tuple], n_frames: int) -> list:
    """A box for every frame: the last detection at or before it (the first one before any detection)."""
    detections = {i: b for i, b in detections.items() if b is not None}
    if not detections:
        return [None] * n_frames
    order = sorted(detections)
    boxes, current, k = [], detections[order[0]], 0
    for index in range(n_frames):
        while k < len(order) and order[k] <= index:
            current, k = detections[order[k]], k + 1
        boxes.append(current)
    return boxes


def _text(frame, text, origin, scale, thick, colour=(0, 230, 0)) -> None:
    """Text with a dark outline, readable on any background."""
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def draw_overlay(frame: np.ndarray, box, text: str, probs: np.ndarray | None, classes: list[str]) -> np.ndarray:
    """Face box, label/probability above it, and one bar per class on a dark panel at the top left."""
    height = frame.shape[0]
    scale, thick = max(0.35, height / 720), max(1, round(height / 360))
    if box is not None:
        x, y, w, h = box
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 230, 0), thick)
        _text(frame, text, (x, max(int(30 * scale), y - int(10 * scale))), scale, thick)
    elif text:
        _text(frame, text, (int(10 * scale), height - int(12 * scale)), scale, thick)
    if probs is not None:
        row, bar = int(24 * scale), int(110 * scale)
        x1, y1 = min(frame.shape[1], int(250 * scale)), min(height, row * len(classes) + 8)
        panel = frame[:y1, :x1]
        panel[:] = (panel * 0.35).astype(np.uint8)  # darken under the bars
        for i, (name, p) in enumerate(zip(classes, probs)):
            y = 4 + i * row
            cv2.rectangle(frame, (6, y + 3), (6 + max(1, int(bar * float(p))), y + row - 3), (0, 170, 255), -1)
            cv2.putText(frame, f"{name} {p:.2f}", (12 + bar, y + row - 7), cv2.FONT_HERSHEY_SIMPLEX,
                        scale * 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


@lru_cache(maxsize=1)
def has_libx264() -> bool:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return " libx264 " in out


def mux(video_only: Path, source: Path, out: Path) -> str:
    """Re-encode the drawn frames (H.264 when the ffmpeg binary has libx264) with the source's first audio
    stream (if any) into `out`, atomically. Returns the video codec used."""
    codec = "libx264" if has_libx264() else "copy"
    video = ffmpeg.input(str(video_only)).video
    audio = ffmpeg.input(str(source))["a:0?"]
    options = {"vcodec": codec, "acodec": "aac", "audio_bitrate": "192k", "format": "mp4",
               "movflags": "+faststart"}
    if codec == "libx264":
        options.update(preset="veryfast", crf=20, pix_fmt="yuv420p")
    with atomic_path(out) as tmp:
        try:
            ffmpeg.output(video, audio, str(tmp), **options).run(cmd=ffmpeg_exe(), capture_stdout=True,
                                                                  capture_stderr=True)
        except ffmpeg.Error as err:
            last = err.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
            raise StageError(f"{out}: ffmpeg could not write the annotated video ({last[0]})") from None
    return "h264" if codec == "libx264" else "mp4v"


def annotate_video(source: str | Path, out: str | Path, labels: list, boxes: list, classes: list[str]) -> dict:
    """Draw box and current label on every frame of `source` into `out` (audio kept).

    labels[i]: (label text, probabilities or None) for frame i; boxes[i]: box or None."""
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise StageError(f"{out}: the annotated video would overwrite its input")
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    ok, frame = capture.read()
    if not ok:
        raise StageError(f"{source}: no decodable frames to annotate")
    size = (frame.shape[1], frame.shape[0])
    count = 0
    with tempfile.TemporaryDirectory(prefix="avemo-annotate-") as tmp_dir:
        raw = Path(tmp_dir) / "frames.mp4"
        writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise StageError(f"{raw}: OpenCV cannot write mp4v video")
        while ok:
            i = min(count, len(labels) - 1)
            text, probs = labels[i] if labels else ("", None)
            writer.write(draw_overlay(frame, boxes[min(count, len(boxes) - 1)] if boxes else None, text, probs,
                                      classes))
            count += 1
            ok, frame = capture.read()
        writer.release()
        capture.release()
        codec = mux(raw, source, out)
    return {"path": str(out), "frames": count, "size": list(size), "fps": round(fps, 3), "codec": codec}


def clip_annotations(result: ClipResult, n_frames: int) -> tuple[list, list]:
    text = f"{result.label} {np.max(result.probs):.2f}"
    return [(text, result.probs)] * n_frames, frame_boxes(result.detections, n_frames)


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


# ------------------------------------------------------------------------------------------------ output

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
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def format_table(result: dict) -> str:
    """The terminal report: what was read, then all class probabilities, largest first."""
    lines = [f"input: {result['input']}",
             f"model: {result['model']} ({result['inputs']}), preprocessing from {result['preprocessing_from']}"]
    if result.get("fallback"):
        lines.append(f"fallback: predicted with '{result['used_model']}'")
    if result.get("face"):
        f = result["face"]
        lines.append(f"face: detected in {f['detected']}/{f['sampled']} sampled frames "
                     f"({f['frame_size'][0]}x{f['frame_size'][1]}, {f['fps']} fps)")
    if result.get("audio"):
        a = result["audio"]
        lines.append(f"audio: {a['status']}" + (f", {a['seconds']} s" if a.get("seconds") else "")
                     + (f", {a['rms_dbfs']} dBFS" if a.get("rms_dbfs") is not None else ""))
    if result["mode"] == "stream":
        s = result["stream"]
        lines.append(f"stream: {s['frames']} frames in {s['windows']} windows of {s['window_s']} s every "
                     f"{s['hop_s']} s, {s['fps_processed']} frames/s processed; aggregate: {s['aggregate']}")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    lines.append(f"{'emotion':<10} {'probability':>11}")
    for name, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:<10} {p:>11.3f}  {'#' * int(round(p * 40))}")
    lines.append(f"prediction: {result['label']} ({result['confidence']:.3f}) in {result['seconds']:.2f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m avemo.predict", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="video or audio file, camera index (0) or stream URL (rtsp://, http://)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="name in --models-dir or a checkpoint path "
                                                               f"(default {DEFAULT_MODEL})")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS,
                        help="params.yaml used when a checkpoint does not record its preprocessing")
    parser.add_argument("--audio-fallback", metavar="MODEL", help="audio model used when no face is found")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--annotate", type=Path, metavar="OUT.mp4", help="write the video with box and label")
    parser.add_argument("--mode", choices=("auto", "clip", "stream"), default="auto",
                        help=f"clip: one prediction for the file; stream: sliding windows; auto: stream for "
                             f"live input, --timeline/--per-frame, or files over {MAX_CLIP_S:g} s")
    parser.add_argument("--window", type=float, help="window length in s (default: the model's audio duration_s)")
    parser.add_argument("--hop", type=float, default=0.375, help="window hop in s, rounded to the frame grid")
    parser.add_argument("--timeline", type=Path, metavar="FILE", help="window timeline as .csv or .json")
    parser.add_argument("--per-frame", type=Path, metavar="FILE", help="per-frame predictions as .csv or .json")
    parser.add_argument("--aggregate", choices=("vote", "sum"), default="vote",
                        help="frame-level aggregation: majority vote (ties by probability sum) or probability sum")
    parser.add_argument("--live", action="store_true", help="treat a file like a live source (drop frames when "
                                                            "behind, audio read through a pipe)")
    parser.add_argument("--max-seconds", type=float, help="stop live input after this many seconds of video")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the other core decodes; more threads on a busy CPU "
                             "make PyTorch's spinning workers 10-100x slower)")
    return parser.parse_args(argv)


def is_live_source(text: str) -> bool:
    return text.isdigit() or ("://" in text and not text.startswith("file://"))


def choose_mode(args: argparse.Namespace, live: bool) -> str:
    """auto: stream for live input, a timeline or per-frame output, or a file longer than MAX_CLIP_S."""
    from .stream import file_seconds

    if args.mode == "auto":
        long_file = not live and file_seconds(Path(args.input)) > MAX_CLIP_S
        return "stream" if live or args.timeline or args.per_frame or long_file else "clip"
    if args.mode == "clip" and (live or args.timeline or args.per_frame):
        raise StageError("--mode clip reads a whole file: live input, --timeline and --per-frame need --mode stream")
    return args.mode


def run_clip(args: argparse.Namespace, predictor: Predictor, fallback: Predictor | None) -> dict:
    result = predict_clip(args.input, predictor, fallback, args.models_dir)
    out = result.as_dict()
    if args.annotate:
        labels, boxes = clip_annotations(result, count_frames(Path(args.input)))
        out["annotated"] = annotate_video(args.input, args.annotate, labels, boxes, result.classes)
    return out


def run_stream_mode(args: argparse.Namespace, predictor: Predictor, fallback: Predictor | None, live: bool) -> dict:
    from . import stream

    printer = None if args.json else (lambda w: print(w.line(), flush=True))
    result = stream.run_stream(args.input, predictor, window_s=args.window, hop_s=args.hop, fallback=fallback,
                               live=live, detect=bool(args.annotate) or None, on_window=printer,
                               max_seconds=args.max_seconds, models_dir=args.models_dir)
    frames = stream.frame_rows(result)
    out = stream.summary(result, frames, args.aggregate)
    if args.timeline:
        write_rows(args.timeline, [w.row(result.classes) for w in result.windows])
    if args.per_frame:
        write_rows(args.per_frame, frames)
    if args.annotate:
        labels, boxes = stream.frame_annotations(result, frames)
        out["annotated"] = annotate_video(args.input, args.annotate, labels, boxes, result.classes)
    return out


def run(args: argparse.Namespace) -> dict:
    live = args.live or is_live_source(args.input)
    if is_live_source(args.input):
        if args.annotate:
            raise StageError(f"--annotate needs a video file: {args.input} is live input, which is not stored")
    else:
        check_input(args.input)
    predictor = load_predictor(args.model, args.models_dir, args.params)
    fallback = load_predictor(args.audio_fallback, args.models_dir, args.params) if args.audio_fallback else None
    if fallback is not None and fallback.kind != "audio":
        raise StageError(f"--audio-fallback {args.audio_fallback}: '{fallback.name}' is {fallback.described}; "
                         "the fallback must use audio only")
    if choose_mode(args, live) == "clip":
        return run_clip(args, predictor, fallback)
    return run_stream_mode(args, predictor, fallback, live)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))

    def body():
        result = run(args)
        print(json.dumps(result, indent=2, default=str) if args.json else format_table(result))
        if "annotated" in result and not args.json:
            a = result["annotated"]
            print(f"annotated: {a['path']} ({a['frames']} frames, {a['size'][0]}x{a['size'][1]}, {a['codec']})")

    try:
        run_stage(body)
    except KeyboardInterrupt:  # stream mode stops cleanly by itself; this is the clip mode
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
