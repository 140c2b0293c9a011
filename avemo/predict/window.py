"""The sliding windows: one frame grid shared by all windows, the windows' results, and the state that
predicts each window as soon as its frames and audio are in. The sampled frames' faces are found and
cropped by the faces stage's own path (avemo.faces.clip: detector, tracking every `track_step` points,
nearest box, align), the stream being the clip; each frame is detected and each crop embedded once
whatever the overlap."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..audio import fix_length
from ..errors import StageError
from ..faces.clip import crops_of, find_faces
from ..faces.detect import detect_faces
from .output import probability_dict
from .predictor import Predictor, needs_modality

if TYPE_CHECKING:
    from .sources import AudioFeed


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
    enrolment_clips: int = 0  # clips (or earlier windows, --adapt) whose statistics standardised this window
    branch: str = ""  # audio+video | video | audio: which inputs answered

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
                "enrolment_clips": self.enrolment_clips, "branch": self.branch,
                **{f"p_{k}": v for k, v in probs.items()}}


@dataclass
class Point:
    index: int  # the video frame it samples
    frame: np.ndarray | None  # None without detection (audio model, no --annotate)
    embedded: dict = None  # crop bytes -> the model's per-frame inputs (embedding, crop read back), made once


class StreamFaces:
    """The faces of the stream's sampled points, found as the faces stage finds a clip's (avemo.faces.clip:
    the checkpoint's detector, tracked every `track_step` points), the whole stream being the clip: points
    are taken in runs of `track_step`, both ends of a run detected in full, the points between searched near
    the box interpolated between the ends. A point's face, so its crop, is the same in every window that
    samples it, and each frame is detected once whatever the overlap."""

    def __init__(self, cfg: dict):
        self.cfg, self.step = cfg, max(1, int(cfg.get("track_step", 1)))
        self.found: dict[int, object] = {}  # point -> Face or None
        self.anchor: tuple[int, np.ndarray] | None = None  # the last run's end (point, frame): the next run's start

    def track(self, frame_of, upto: int, final: bool = False) -> None:
        """Every run whose points (< `upto`) are all in; with `final`, the last, shorter one too."""
        while True:
            start, last = self.anchor[0] if self.anchor else 0, upto - 1
            if last < start or (last == start and self.anchor):
                return  # nothing new
            end = start + self.step
            if end > last:
                if not final:
                    return
                end = last
            self._run(start, end, frame_of)

    def _run(self, start: int, end: int, frame_of) -> None:
        frames = [self.anchor[1] if self.anchor else frame_of(start)] + [frame_of(j) for j in range(start + 1, end + 1)]
        known = self.found.get(start) if self.anchor else None

        def detect(batch):  # the run's start was detected as the previous run's end
            todo = [f for f in batch if not (self.anchor and f is frames[0])]
            found = iter(detect_faces(todo, self.cfg) if todo else [])
            return [known if self.anchor and f is frames[0] else next(found) for f in batch]

        faces, _, _ = find_faces(frames, {**self.cfg, "track_step": self.step}, detect)
        self.found.update(zip(range(start, end + 1), faces))
        self.anchor = (end, frames[-1])

    def forget_before(self, point: int) -> None:
        for j in [j for j in self.found if j < point and (not self.anchor or j != self.anchor[0])]:
            del self.found[j]


class WindowPredictor:
    """State of the stream: sampled points (crop, face found, embedding) and the next window to predict."""

    def __init__(self, predictor: Predictor, grid: Grid, audio: AudioFeed | None, fallback: Predictor | None,
                 detect: bool, enrolment=None, adapt: bool = False):
        self.predictor, self.grid, self.audio, self.fallback = predictor, grid, audio, fallback
        self.detect = detect
        # speaker statistics: fixed enrolment clips (--enroll) and/or the windows already seen (--adapt)
        self.enrolment, self.adapt, self.history = enrolment, adapt, []
        self.faces = predictor.faces
        self.tracker = StreamFaces(self.faces)  # the faces stage's detector (faces.detector of the checkpoint)
        self.points: dict[int, Point] = {}
        self.detections: dict[int, tuple | None] = {}  # frame index -> the face found there (None: none)
        self.next_j = 0  # grid points filled so far
        self.next_k = 0  # next window to predict

    def add_frame(self, index: int, frame: np.ndarray) -> None:
        """One sampled frame: fill the grid points due, and find the faces of the runs it completes."""
        while self.grid.frame(self.next_j) <= index:
            self.points[self.next_j] = Point(index, frame, {})
            self.next_j += 1
        self.tracker.track(lambda j: self.points[j].frame, self.next_j)

    def skip_frames(self, frames_seen: int) -> None:
        """Without detection (audio model, no --annotate) grid points just follow the decoded frames."""
        while self.grid.frame(self.next_j) < frames_seen:
            self.points[self.next_j] = Point(self.grid.frame(self.next_j), None, {})
            self.next_j += 1

    def window_faces(self, js: list[int]):
        """The face track of a window's points: crops around each point's face (the nearest point's where it
        has none), detection flags (None without detection)."""
        if not js or self.points[js[0]].frame is None:
            return None
        track = crops_of([self.points[j].frame for j in js], [self.tracker.found[j] for j in js], self.faces)
        for j, box, found in zip(js, track.boxes, track.detected):
            self.detections[self.points[j].index] = box if found else None
        return track

    def _audio_span(self, k: int) -> tuple[int, int]:
        a = (self.fallback if not self.predictor.uses_audio else self.predictor).prep["audio"]
        rate, length = a["sample_rate"], int(a["duration_s"] * a["sample_rate"])
        window = int(round(self.grid.window_s * rate))
        start = int(round(self.grid.start_s(k) * rate)) + max(0, (window - length) // 2)
        return start, start + min(length, window)

    def _ready(self, k: int) -> bool:
        last = self.grid.points(k)[-1]
        if last >= self.next_j or (self.detect and last not in self.tracker.found):
            return False
        if self.audio is None or self.audio.done:
            return True
        return self.audio.available() >= self._audio_span(k)[1]

    def ready_windows(self, final: bool = False) -> list[Window]:
        out = []
        if final and self.detect:
            self.tracker.track(lambda j: self.points[j].frame, self.next_j, final=True)
        while self._ready(self.next_k):
            out.append(self.predict_window(self.next_k))
            self.next_k += 1
        if final and self.next_k == 0 and self.next_j > 0:  # shorter than one window: use what there is
            out.append(self.predict_window(0))
            self.next_k = 1
        for j in [j for j in self.points if j < self.next_k * self.grid.step]:
            del self.points[j]  # no later window uses them
        self.tracker.forget_before(self.next_k * self.grid.step)
        if self.audio is not None and self.audio.status == "ok" and (self.predictor.uses_audio or self.fallback):
            self.audio.discard_before(self._audio_span(self.next_k)[0])  # nor these samples
        return out

    def _video_inputs(self, model: Predictor, js: list[int], crops: np.ndarray) -> dict[str, np.ndarray]:
        keys = [crop.tobytes() for crop in crops]
        todo = [i for i, (j, key) in enumerate(zip(js, keys)) if key not in self.points[j].embedded]
        if todo:  # the crops of this window not embedded before, in one batch
            batch = model.video_inputs(crops[todo])
            for n, i in enumerate(todo):
                self.points[js[i]].embedded[keys[i]] = {k: v[n] for k, v in batch.items()}
        rows = [self.points[j].embedded[key] for j, key in zip(js, keys)]
        rows += [rows[-1]] * (self.grid.n - len(rows))  # a short last window repeats its last frame
        return {k: np.stack([row[k] for row in rows]) for k in rows[0]}

    def _audio_input(self, model: Predictor, k: int) -> dict | None:
        if self.audio is None or self.audio.status != "ok":
            return None
        start, stop = self._audio_span(k)
        a = model.prep["audio"]
        segment = self.audio.span(start, stop)
        return model.audio_inputs(fix_length(segment, int(a["duration_s"] * a["sample_rate"])), {**a, "offset_s": 0.0})

    def predict_window(self, k: int) -> Window:
        grid = self.grid
        js = [j for j in grid.points(k) if j in self.points]
        start, end = grid.start_s(k), (grid.start_frame(k) + grid.window_frames) / grid.fps
        track = self.window_faces(js) if self.detect else None
        detected = track.detected if track is not None else [False] * len(js)
        face_rate = float(np.mean(detected)) if self.detect and detected else None
        model, status = self.predictor, "ok"
        classes = model.classes
        audible = self.audio is not None and self.audio.status == "ok"
        branch = model.branch_for(any(detected) or not model.uses_video, audible or not model.uses_audio)
        if len(model.branches) == 1:
            branch = model.kind
        elif branch is None:
            return Window(k, start, end, "no_face", None, None, face_rate, classes)  # and no sound
        if model.uses_video and not any(detected) and len(model.branches) == 1:
            if self.fallback is None or not audible:
                return Window(k, start, end, "no_face", None, None, face_rate, classes)
            model, status, branch = self.fallback, "fallback", self.fallback.kind
        needs = set(model.branches[branch])
        inputs = {}
        if needs_modality(needs, "audio"):
            audio = self._audio_input(model, k)
            if audio is None:
                return Window(k, start, end, "no_audio", None, None, face_rate, classes)
            inputs.update(audio)
        if needs_modality(needs, "video"):
            inputs.update(self._video_inputs(model, js, track.crops))
        stats = self.speaker_statistics() if model is self.predictor else None
        if stats is not None and not all(n in stats for n in needs):
            stats = None
        probs = model.probabilities(inputs, stats, branch)
        if self.adapt and model is self.predictor:
            self.history.append(inputs)  # used from the next window on, never for this one
        count = 0 if stats is None else len(next(iter(stats.values())))
        return Window(k, start, end, status, model.name, probs, face_rate, classes, count, branch)

    def speaker_statistics(self) -> dict | None:
        """The enrolment inputs of this person so far: --enroll clips, then (--adapt) every earlier window."""
        parts = ([self.enrolment.inputs] if self.enrolment is not None else []) + \
            [{k: v[None] for k, v in h.items()} for h in self.history]
        names = {k for p in parts for k in p}
        return {k: np.concatenate([p[k] for p in parts if k in p]) for k in names} or None
