"""Sliding-window prediction for long videos, cameras and streams.

A reader thread decodes every frame (`grab`) but converts and queues only the frames the windows sample;
the main thread detects the face on those, reuses the last box between detections, embeds the crops
and predicts each window as soon as its frames (and audio) are in. Frames are sampled on one grid:
window k takes `n_frames` grid points spread over `window_s` exactly as avemo.video.sample_indices
spreads them over a clip, and consecutive windows share points, so each sampled frame is detected and
embedded once whatever the overlap.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from .audio import ffmpeg_exe, fix_length
from .predict import (DEFAULT_MODELS_DIR, AudioTrack, Predictor, StageError, _missing_audio_error, aggregate,
                      check_input, frame_boxes, probability_dict, read_audio)
from .video import detect_largest_face, square_crop

DEFAULT_FPS = 30.0  # for sources that do not report a frame rate (some cameras)


# ------------------------------------------------------------------------------------------------- grid

@dataclass(frozen=True)
class Grid:
    """Frame sampling shared by all windows: point j sits at frame int((j + 0.5) * window_frames / n)."""
    fps: float
    window_frames: int
    n: int  # frames per window (the checkpoint's faces.n_frames)
    step: int  # grid points between consecutive window starts

    def frame(self, j: int) -> int:
        return int((j + 0.5) * self.window_frames / self.n)

    def points(self, k: int) -> range:
        return range(k * self.step, k * self.step + self.n)

    def start_frame(self, k: int) -> float:
        return k * self.step * self.window_frames / self.n

    def start_s(self, k: int) -> float:
        return self.start_frame(k) / self.fps

    @property
    def window_s(self) -> float:
        return self.window_frames / self.fps

    @property
    def hop_s(self) -> float:
        return self.step * self.window_frames / self.n / self.fps


def make_grid(fps: float, window_s: float, hop_s: float, n: int, total_frames: int | None = None) -> Grid:
    """Window of round(window_s * fps) frames (the whole file when shorter), hop rounded to whole grid steps."""
    if window_s <= 0 or hop_s <= 0:
        raise StageError(f"window ({window_s} s) and hop ({hop_s} s) must be positive")
    window_frames = max(1, round(window_s * fps))
    if total_frames and 0 < total_frames < window_frames:
        window_frames = total_frames  # a file shorter than a window: one window, sampled like crop_faces
    step = max(1, round(hop_s * fps * n / window_frames))
    return Grid(fps, window_frames, n, step)


# ------------------------------------------------------------------------------------------------ audio

class AudioFeed:
    """Mono samples of the source at the model's rate: a whole file read once as the pipeline reads it
    (predict.read_audio: extract_audio + load_wav), or a live ffmpeg pipe filled by a thread (decode_audio's
    output options; no 16-bit WAV step)."""

    def __init__(self, rate: int, status: str = "ok", samples: np.ndarray | None = None, rms_dbfs=None):
        self.rate, self.status, self.rms_dbfs = rate, status, rms_dbfs
        self._chunks = [] if samples is None else [samples]
        self._samples = samples if samples is not None else np.zeros(0, np.float32)
        self._lock = threading.Lock()
        self.done = samples is not None or status != "pending"
        self._process = None

    @classmethod
    def from_file(cls, path: Path, rate: int) -> "AudioFeed":
        track = read_audio(path, rate)
        return cls(rate, track.status, track.samples, track.rms_dbfs)

    @classmethod
    def from_pipe(cls, source: str, rate: int) -> "AudioFeed":
        feed = cls(rate, "pending")
        feed.done = False
        stream = ffmpeg.input(source).output("pipe:", format="f32le", ac=1, ar=rate, vn=None)
        feed._process = stream.global_args("-loglevel", "error").run_async(
            cmd=ffmpeg_exe(), pipe_stdout=True, pipe_stderr=True)
        threading.Thread(target=feed._pump, daemon=True).start()
        return feed

    def _pump(self) -> None:
        leftover = b""
        while True:
            data = self._process.stdout.read(16384)
            if not data:
                break
            data, leftover = leftover + data, b""
            usable = len(data) - len(data) % 4
            data, leftover = data[:usable], data[usable:]
            with self._lock:
                self._chunks.append(np.frombuffer(data, np.float32).copy())
                if self.status == "pending":
                    self.status = "ok"
        self._process.wait()
        with self._lock:
            if self.status == "pending":
                self.status = "no_audio"
            self.done = True

    def available(self) -> int:
        with self._lock:
            return sum(len(c) for c in self._chunks)

    def samples(self) -> np.ndarray:
        with self._lock:
            if len(self._chunks) > 1:
                self._chunks = [np.concatenate(self._chunks)]
            return self._chunks[0] if self._chunks else np.zeros(0, np.float32)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()


# ------------------------------------------------------------------------------------------ the windows

@dataclass
class Window:
    index: int
    start_s: float
    end_s: float
    status: str  # ok | fallback | no_face | no_audio
    model: str | None
    probs: np.ndarray | None
    face_rate: float | None
    classes: list[str]

    @property
    def label(self) -> str | None:
        return None if self.probs is None else self.classes[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float | None:
        return None if self.probs is None else float(np.max(self.probs))

    @property
    def centre_s(self) -> float:
        return (self.start_s + self.end_s) / 2

    def text(self) -> str:
        if self.probs is None:
            return self.status.replace("_", " ")
        return f"{self.label} {self.confidence:.2f}" + (" (audio)" if self.status == "fallback" else "")

    def line(self) -> str:
        face = "" if self.face_rate is None else f"  face {self.face_rate:.0%}"
        return f"{self.start_s:8.2f}-{self.end_s:8.2f} s  {self.text():<22}{face}"

    def row(self, classes: list[str] | None = None) -> dict:
        probs = dict.fromkeys(classes or self.classes, None) if self.probs is None else \
            probability_dict(self.probs, classes or self.classes)
        return {"window": self.index, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "time_s": round(self.centre_s, 3), "label": self.label or "",
                "confidence": None if self.probs is None else round(self.confidence, 4), "status": self.status,
                "model": self.model or "", "face_rate": None if self.face_rate is None else round(self.face_rate, 3),
                **{f"p_{k}": v for k, v in probs.items()}}


@dataclass
class Point:
    crop: np.ndarray | None
    detected: bool
    inputs: dict | None = None  # the model's per-frame inputs (embedding, crop read back), made once


class WindowPredictor:
    """State of the stream: sampled points (crop, face found, embedding) and the next window to predict."""

    def __init__(self, predictor: Predictor, grid: Grid, audio: AudioFeed | None, fallback: Predictor | None,
                 detect: bool):
        self.predictor, self.grid, self.audio, self.fallback = predictor, grid, audio, fallback
        self.detect = detect
        self.faces = predictor.prep["faces"]
        self.points: dict[int, Point] = {}
        self.detections: dict[int, tuple | None] = {}
        self.next_j = 0  # grid points filled so far
        self.next_k = 0  # next window to predict
        self.last_box = None

    def add_frame(self, index: int, frame: np.ndarray) -> None:
        """Detect the face on one sampled frame, crop it with the last box found, fill the grid points due."""
        cfg = self.faces
        box = detect_largest_face(frame, cfg["scale_factor"], cfg["min_neighbors"], cfg["min_face"])
        if box is not None:
            self.last_box = box
        self.detections[index] = box
        crop = square_crop(frame, self.last_box, cfg["margin"], cfg["size"]) if self.predictor.uses_video else None
        while self.grid.frame(self.next_j) <= index:
            self.points[self.next_j] = Point(crop, box is not None)
            self.next_j += 1

    def skip_frames(self, frames_seen: int) -> None:
        """Without detection (audio model, no --annotate) grid points just follow the decoded frames."""
        while self.grid.frame(self.next_j) < frames_seen:
            self.points[self.next_j] = Point(None, False)
            self.next_j += 1

    def _audio_span(self, k: int) -> tuple[int, int]:
        a = (self.fallback if not self.predictor.uses_audio else self.predictor).prep["audio"]
        rate, length = a["sample_rate"], int(a["duration_s"] * a["sample_rate"])
        window = int(round(self.grid.window_s * rate))
        start = int(round(self.grid.start_s(k) * rate)) + max(0, (window - length) // 2)
        return start, start + min(length, window)

    def _ready(self, k: int) -> bool:
        if self.grid.points(k)[-1] >= self.next_j:
            return False
        if self.audio is None or self.audio.done:
            return True
        return self.audio.available() >= self._audio_span(k)[1]

    def ready_windows(self, final: bool = False) -> list[Window]:
        out = []
        while self._ready(self.next_k):
            out.append(self.predict_window(self.next_k))
            self.next_k += 1
        if final and self.next_k == 0 and self.next_j > 0:  # shorter than one window: use what there is
            out.append(self.predict_window(0))
            self.next_k = 1
        for j in [j for j in self.points if j < self.next_k * self.grid.step]:
            del self.points[j]  # no later window uses them
        return out

    def _video_inputs(self, model: Predictor, js: list[int]) -> dict[str, np.ndarray]:
        todo = [j for j in js if self.points[j].inputs is None]
        if todo:  # the new points of this window in one batch
            batch = model.video_inputs(np.stack([self.points[j].crop for j in todo]))
            for i, j in enumerate(todo):
                self.points[j].inputs = {k: v[i] for k, v in batch.items()}
        js = js + [js[-1]] * (self.grid.n - len(js))  # a short last window repeats its last frame
        return {k: np.stack([self.points[j].inputs[k] for j in js]) for k in self.points[js[0]].inputs}

    def _audio_input(self, model: Predictor, k: int) -> dict | None:
        if self.audio is None or self.audio.status != "ok":
            return None
        start, stop = self._audio_span(k)
        a = model.prep["audio"]
        segment = self.audio.samples()[start:stop]
        return model.audio_inputs(fix_length(segment, int(a["duration_s"] * a["sample_rate"])))

    def predict_window(self, k: int) -> Window:
        grid = self.grid
        js = [j for j in grid.points(k) if j in self.points]
        start, end = grid.start_s(k), (grid.start_frame(k) + grid.window_frames) / grid.fps
        detected = [self.points[j].detected for j in js]
        face_rate = float(np.mean(detected)) if self.detect and detected else None
        model, status = self.predictor, "ok"
        classes = model.classes
        if model.uses_video and not any(detected):
            if self.fallback is None or self.audio is None or self.audio.status != "ok":
                return Window(k, start, end, "no_face", None, None, face_rate, classes)
            model, status = self.fallback, "fallback"
        inputs = {}
        if model.uses_audio:
            audio = self._audio_input(model, k)
            if audio is None:
                return Window(k, start, end, "no_audio", None, None, face_rate, classes)
            inputs.update(audio)
        if model.uses_video:
            inputs.update(self._video_inputs(model, js))
        return Window(k, start, end, status, model.name, model.probabilities(inputs), face_rate, classes)


# ----------------------------------------------------------------------------------------------- source

@dataclass
class StreamResult:
    source: str
    model: str
    kind: str
    classes: list[str]
    grid: Grid
    windows: list[Window] = field(default_factory=list)
    detections: dict = field(default_factory=dict)
    frames: int = 0
    frame_size: tuple[int, int] = (0, 0)
    seconds: float = 0.0
    dropped: int = 0
    audio: dict | None = None
    notes: list[str] = field(default_factory=list)
    preprocessing_from: str = ""

    @property
    def fps_processed(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def open_capture(source: str, live: bool) -> tuple[cv2.VideoCapture, str]:
    if source.isdigit():
        capture, name = cv2.VideoCapture(int(source)), f"camera {source}"
    elif "://" in source:
        capture, name = cv2.VideoCapture(source), source
    else:
        path = check_input(source)
        capture, name = cv2.VideoCapture(str(path)), str(path)
    if not capture.isOpened():
        raise StageError(f"{name}: cannot open as a video (stream mode needs video frames; "
                         "for an audio file use --mode clip with an audio model)")
    return capture, name


def file_seconds(path: Path) -> float:
    """Duration from the container's frame count and rate (0 for files OpenCV cannot read as video)."""
    capture = cv2.VideoCapture(str(path))
    fps, count = capture.get(cv2.CAP_PROP_FPS) or 0.0, capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0
    capture.release()
    return count / fps if fps > 0 else 0.0


def open_audio(source: str, name: str, predictor: Predictor, fallback: Predictor | None, live: bool,
               notes: list[str], models_dir=DEFAULT_MODELS_DIR) -> AudioFeed | None:
    user = predictor if predictor.uses_audio else fallback
    if user is None:
        return None
    rate = user.prep["audio"]["sample_rate"]
    if source.isdigit():
        feed = AudioFeed(rate, "no_audio")  # OpenCV cameras carry no sound
    elif live:
        feed = AudioFeed.from_pipe(source, rate)
    else:
        feed = AudioFeed.from_file(Path(source), rate)
    if feed.status in ("no_audio", "silent"):
        problem = f"{name}: has no audio stream" if feed.status == "no_audio" else \
            f"{name}: audio is silent (RMS {feed.rms_dbfs:.1f} dBFS)"
        if predictor.uses_audio:
            raise _missing_audio_error(name, predictor, AudioTrack(feed.status, None, rate, feed.rms_dbfs),
                                       models_dir)
        notes.append(f"{problem}; --audio-fallback unavailable")
        return None
    return feed


def _put(q: queue.Queue, item, live: bool, stats: dict, stop: threading.Event) -> None:
    """Files wait for the consumer; live sources drop the oldest queued frame instead of falling behind."""
    while not stop.is_set():
        if live and q.full():
            try:
                q.get_nowait()
                stats["dropped"] += 1
            except queue.Empty:
                pass
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _reader(capture, grid: Grid, q: queue.Queue, stop: threading.Event, live: bool, retrieve: bool,
            max_frames: int | None, stats: dict) -> None:
    j = index = 0
    try:
        while not stop.is_set() and (max_frames is None or index < max_frames):
            if not capture.grab():
                break
            if retrieve and grid.frame(j) <= index:
                ok, frame = capture.retrieve()
                while grid.frame(j) <= index:
                    j += 1
                if ok:
                    if not all(stats["size"]):
                        stats["size"] = (frame.shape[1], frame.shape[0])
                    _put(q, (index, frame), live, stats, stop)
            index += 1
            stats["frames"] = index
    finally:
        capture.release()
        _put(q, (None, index), False, stats, stop)


def _wait_for_audio(audio: AudioFeed | None, seconds: float, timeout: float = 5.0) -> None:
    """A live pipe may still be delivering the audio of the last frames: wait for it, a little."""
    deadline = time.perf_counter() + timeout
    while (audio is not None and not audio.done and audio.available() < seconds * audio.rate
           and time.perf_counter() < deadline):
        time.sleep(0.02)


def _source_grid(capture, name: str, predictor: Predictor, window_s: float | None, hop_s: float, live: bool,
                 notes: list[str]) -> Grid:
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    if not 0 < fps <= 240:
        notes.append(f"{name}: no usable frame rate reported ({fps}); assuming {DEFAULT_FPS:g} fps")
        fps = DEFAULT_FPS
    total = None if live else int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return make_grid(fps, window_s or predictor.prep["audio"]["duration_s"], hop_s,
                     predictor.prep["faces"]["n_frames"], total)


def _consume(q: queue.Queue, state: WindowPredictor, stats: dict, emit) -> None:
    """Main thread: sampled frames from the queue -> face, crop, grid points -> completed windows."""
    while True:
        try:
            index, frame = q.get(timeout=0.05)
        except queue.Empty:
            if not state.detect:  # nothing is queued without detection: follow the reader's frame count
                state.skip_frames(stats["frames"])
                emit(state.ready_windows())
            continue
        if index is None:
            break
        state.add_frame(index, frame)
        emit(state.ready_windows())
    if not state.detect:
        state.skip_frames(stats["frames"])


def run_stream(source, predictor: Predictor, window_s: float | None = None, hop_s: float = 0.375,
               fallback: Predictor | None = None, live: bool = False, detect: bool | None = None,
               on_window=None, max_seconds: float | None = None, queue_size: int = 32,
               models_dir=DEFAULT_MODELS_DIR) -> StreamResult:
    """Queue-based sliding-window prediction over a file, camera index or URL; `on_window(Window)` is called
    as each window completes. Faces are detected when the model reads video or `detect` is true (boxes
    for --annotate). Ctrl-C stops a live source and keeps what was predicted."""
    source, started, notes = str(source), time.perf_counter(), []
    capture, name = open_capture(source, live)
    live = live or source.isdigit() or ("://" in source and not source.startswith("file://"))
    try:
        grid = _source_grid(capture, name, predictor, window_s, hop_s, live, notes)
        audio = open_audio(source, name, predictor, fallback, live, notes, models_dir)
    except BaseException:
        capture.release()
        raise
    state = WindowPredictor(predictor, grid, audio, fallback, predictor.uses_video or bool(detect))
    result = StreamResult(name, predictor.name, predictor.kind, predictor.classes, grid, notes=notes,
                          preprocessing_from=predictor.prep_source)
    stats = {"frames": 0, "dropped": 0, "size": (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                                                  int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))}
    q: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()
    max_frames = int(max_seconds * grid.fps) if max_seconds else None
    thread = threading.Thread(target=_reader, args=(capture, grid, q, stop, live, state.detect, max_frames, stats),
                              daemon=True)
    thread.start()

    def emit(windows):
        for w in windows:
            result.windows.append(w)
            if on_window is not None:
                on_window(w)

    try:
        _consume(q, state, stats, emit)
        _wait_for_audio(audio, stats["frames"] / grid.fps)
        emit(state.ready_windows(final=True))
    except KeyboardInterrupt:
        notes.append("stopped by Ctrl-C")
        emit(state.ready_windows(final=True))
    finally:
        stop.set()
        thread.join(timeout=5)
        if audio is not None:
            audio.close()
    return _finish(result, state, audio, stats, started)


def _finish(result: StreamResult, state: WindowPredictor, audio: AudioFeed | None, stats: dict,
            started: float) -> StreamResult:
    if stats["frames"] == 0:
        raise StageError(f"{result.source}: no decodable frames")
    result.detections = state.detections
    if audio is not None:
        result.audio = {"status": audio.status, "seconds": round(audio.available() / audio.rate, 3),
                        "rms_dbfs": None if audio.rms_dbfs is None else round(audio.rms_dbfs, 1)}
    result.frames, result.dropped, result.frame_size = stats["frames"], stats["dropped"], stats["size"]
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------------------------ output

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


