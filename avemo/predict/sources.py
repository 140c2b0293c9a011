"""Opening a stream's source: the video capture of a file, camera index or URL, and its audio feed (a file
read once as the pipeline reads it, or a live ffmpeg pipe filled by a thread)."""
from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from ..audio import ffmpeg_exe
from ..errors import StageError
from .clip import missing_audio_error
from .inputs import AudioTrack, check_input, read_audio
from .predictor import Predictor


MAX_HELD_S = 30.0  # a live pipe stops reading while this much audio waits for the windows (memory bound)


class AudioFeed:
    """Mono samples of the source at the model's rate: a whole file read once as the pipeline reads it
    (inputs.read_audio: extract_audio + load_wav), or a live ffmpeg pipe filled by a thread (decode_audio's
    output options; no 16-bit WAV step). Samples are addressed by their index since the start; the windows
    discard what no later window needs (`discard_before`), so a live feed holds a few seconds whatever
    it lasts (never over MAX_HELD_S: the pipe waits), and each window joins only its own chunks."""

    def __init__(self, rate: int, status: str = "ok", samples: np.ndarray | None = None, rms_dbfs=None):
        self.rate, self.status, self.rms_dbfs = rate, status, rms_dbfs
        self._chunks: deque = deque() if samples is None else deque([samples])
        self._first = 0  # index of the first sample still held
        self._total = 0 if samples is None else len(samples)
        self.peak_held = self._total  # most samples held at once (the live buffer's memory, measured)
        self._lock = threading.Lock()
        self.done = samples is not None or status != "pending"
        self._process = None
        self._closed = False

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
            while self.held() > MAX_HELD_S * self.rate and not self._closed:
                time.sleep(0.01)  # a source faster than real time waits for the windows to catch up
            data = self._process.stdout.read(16384)
            if not data:
                break
            data, leftover = leftover + data, b""
            usable = len(data) - len(data) % 4
            data, leftover = data[:usable], data[usable:]
            self.append(np.frombuffer(data, np.float32).copy())
        self._process.wait()
        with self._lock:
            if self.status == "pending":
                self.status = "no_audio"
            self.done = True

    def append(self, samples: np.ndarray) -> None:
        with self._lock:
            self._chunks.append(samples)
            self._total += len(samples)
            self.peak_held = max(self.peak_held, self._total - self._first)
            if self.status == "pending":
                self.status = "ok"

    def available(self) -> int:
        """Samples received since the start (discarded ones included)."""
        with self._lock:
            return self._total

    def held(self) -> int:
        """Samples held in memory now."""
        with self._lock:
            return self._total - self._first

    def span(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) since the start, as far as received (never discarded ones)."""
        with self._lock:
            if start < self._first:
                raise StageError(f"audio samples from {start} were discarded (held from {self._first})")
            pieces, position = [], self._first
            for chunk in self._chunks:
                end = position + len(chunk)
                if end > start and position < stop:
                    pieces.append(chunk[max(0, start - position):stop - position])
                position = end
                if position >= stop:
                    break
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def discard_before(self, index: int) -> None:
        """Forget the chunks that end before sample `index` (no later window reads them)."""
        with self._lock:
            while self._chunks and self._first + len(self._chunks[0]) <= index:
                self._first += len(self._chunks.popleft())

    def close(self) -> None:
        self._closed = True
        if self._process is not None and self._process.poll() is None:
            self._process.kill()


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
               notes: list[str], models_dir=None) -> AudioFeed | None:
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
        if "video" in predictor.branches:  # a model with a video branch answers without sound
            notes.append(f"{problem}; answered by the video branch of '{predictor.name}'")
            return None
        if predictor.uses_audio:
            raise missing_audio_error(name, predictor, AudioTrack(feed.status, None, rate, feed.rms_dbfs),
                                      models_dir)
        notes.append(f"{problem}; --audio-fallback unavailable")
        return None
    return feed
