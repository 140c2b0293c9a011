"""Sliding-window prediction for long videos, cameras and streams.

A reader thread decodes every frame (`grab`) but converts and queues only the frames the windows sample;
the main thread finds and crops their faces as the faces stage does a clip's (detector, tracking, align:
avemo.faces.clip, the stream being the clip), embeds the crops and predicts each window as soon as its
frames (and audio) are in. Frames are sampled on one grid: window k takes `n_frames` grid points spread
over `window_s` exactly as avemo.faces.sampling.sample_indices spreads them over a clip, and consecutive
windows share points, so each sampled frame is detected, and each crop embedded, once whatever the overlap.

The grid and the windows are in avemo.predict.window, opening the video and audio of the source in
avemo.predict.sources, the per-frame rows and the aggregated answer in avemo.predict.timeline.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import cv2

from ..errors import StageError
from .predictor import Predictor
from .sources import AudioFeed, open_audio, open_capture
from .window import Grid, Window, WindowPredictor, make_grid

DEFAULT_FPS = 30.0  # for sources that do not report a frame rate (some cameras)


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
    model_info: dict = field(default_factory=dict)

    @property
    def fps_processed(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


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


def _wait_for_audio(audio: AudioFeed | None, seconds: float, on_wait, timeout: float = 5.0) -> None:
    """A live pipe may still be delivering the audio of the last frames: wait for it, a little, predicting
    the windows whose audio is in meanwhile (`on_wait`; that frees the feed's bounded buffer)."""
    deadline, received = time.perf_counter() + timeout, -1
    while (audio is not None and not audio.done and audio.available() < seconds * audio.rate
           and time.perf_counter() < deadline):
        if audio.available() > received:  # still coming: wait on
            received, deadline = audio.available(), time.perf_counter() + timeout
        on_wait()
        time.sleep(0.02)


def source_grid(capture, name: str, predictor: Predictor, window_s: float | None, hop_s: float, live: bool,
                notes: list[str]) -> Grid:
    """The windows' grid at the source's frame rate (DEFAULT_FPS when it reports none or a wrong one)."""
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    if not 0 < fps <= 240:
        notes.append(f"{name}: no usable frame rate reported ({fps}); assuming {DEFAULT_FPS:g} fps")
        fps = DEFAULT_FPS
    total = None if live else int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return make_grid(fps, window_s or predictor.window_s, hop_s,
                     predictor.faces["n_frames"], total)


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
               models_dir=None, enrolment=None, adapt: bool = False) -> StreamResult:
    """Queue-based sliding-window prediction over a file, camera index or URL; `on_window(Window)` is called
    as each window completes. Faces are detected when the model reads video or `detect` is true (boxes
    for --annotate). Ctrl-C stops a live source and keeps what was predicted."""
    source, started, notes = str(source), time.perf_counter(), []
    capture, name = open_capture(source, live)
    live = live or source.isdigit() or ("://" in source and not source.startswith("file://"))
    try:
        grid = source_grid(capture, name, predictor, window_s, hop_s, live, notes)
        audio = open_audio(source, name, predictor, fallback, live, notes, models_dir)
    except BaseException:
        capture.release()
        raise
    state = WindowPredictor(predictor, grid, audio, fallback, predictor.uses_video or bool(detect), enrolment, adapt)
    result = StreamResult(name, predictor.name, predictor.kind, predictor.classes, grid, notes=notes,
                          preprocessing_from=predictor.prep_source, model_info=predictor.info)
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
        _wait_for_audio(audio, stats["frames"] / grid.fps, lambda: emit(state.ready_windows()))
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
                        "rms_dbfs": None if audio.rms_dbfs is None else round(audio.rms_dbfs, 1),
                        "peak_held_s": round(audio.peak_held / audio.rate, 3)}
    result.frames, result.dropped, result.frame_size = stats["frames"], stats["dropped"], stats["size"]
    result.seconds = time.perf_counter() - started
    return result
