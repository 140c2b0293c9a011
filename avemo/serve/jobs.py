"""Uploads waiting for the model: a bounded queue served by one worker thread (one model, one CPU budget),
each job in its own folder of the server's temporary directory, named by the server, never by the client.
A job's answer comes first; its annotated video is drawn after it."""
from __future__ import annotations

import json
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import KNOWN_FAILURES
from ..entry import os_error_message

JOB_ID = re.compile(r"^[0-9a-f]{16}$")
KEEP_JOBS = 32  # finished jobs kept for their downloads; older ones' folders are removed


@dataclass
class Job:
    id: str
    folder: Path
    name: str  # the client's file name, for display only (never a path on this machine)
    input: Path
    enrol: list[Path]
    annotate: bool
    enrol_names: list[str] = field(default_factory=list)  # the client's names of the enrolment clips
    state: str = "queued"  # queued | running | done | failed
    video: str = "none"  # none | drawing | ready | failed
    answers: dict = field(default_factory=dict)  # as shown: the client's file names, no path of this machine
    error: str = ""
    seconds: float | None = None
    submitted: float = field(default_factory=time.perf_counter)
    answered: float | None = None
    progress: float | None = None  # a long file: seconds of it analysed so far
    pending: object = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)  # answered or failed  # what the annotated video draws (work.Prediction), once answered

    def shown(self, text: str) -> str:
        """A message or value with this machine's paths replaced by the client's file names."""
        for index, path in enumerate(self.enrol):
            name = self.enrol_names[index] if index < len(self.enrol_names) else f"enrolment clip {index + 1}"
            text = text.replace(str(path), name)
        return text.replace(str(self.input), self.name).replace(str(self.folder), "")

    def shown_data(self, data):
        """JSON-like data with this machine's paths replaced by the client's file names."""
        return json.loads(self.shown(json.dumps(data, default=str)))

    def status(self) -> dict:
        return {"id": self.id, "name": self.name, "state": self.state, "video": self.video,
                "answers": self.answers,
                "error": self.shown(self.error), "seconds": self.seconds, "progress": self.progress,
                "waited": None if self.answered is None else round(self.answered - self.submitted, 3)}


class Busy(RuntimeError):
    """The queue is full: the client is told to try again."""


class JobQueue:
    """Jobs in a bounded queue, run one at a time by `work(job)` in a worker thread."""

    def __init__(self, work: Callable[[Job], None], draw: Callable[[Job], None], bound: int = 4,
                 root: Path | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="avemo-serve-", dir=root))
        self.bound, self._work, self._draw = bound, work, draw
        self._queue: queue.Queue = queue.Queue(maxsize=bound)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="avemo-serve-worker", daemon=True)
        self._thread.start()

    def new_folder(self) -> tuple[str, Path]:
        job_id = secrets.token_hex(8)
        folder = self.root / job_id
        folder.mkdir()
        return job_id, folder

    def submit(self, job: Job) -> Job:
        with self._lock:
            self._jobs[job.id] = job
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.forget(job.id)
            raise Busy(f"{self.bound} uploads are already waiting; try again in a moment") from None
        return job

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.match(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many jobs run or wait before this one."""
        with self._lock:
            return sum(j.state in ("queued", "running") and j.submitted < job.submitted for j in self._jobs.values())

    def forget(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    def _prune(self) -> None:
        with self._lock:
            finished = [j for j in self._jobs.values() if j.state in ("done", "failed") and j.video != "drawing"]
        for job in sorted(finished, key=lambda j: j.submitted)[:-KEEP_JOBS]:
            self.forget(job.id)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.state = "running"
            try:
                self._work(job)
                job.state = "done"
            except KNOWN_FAILURES as err:
                job.error, job.state = str(err), "failed"
            except OSError as err:
                job.error, job.state = os_error_message(err), "failed"
            except Exception as err:  # the server keeps serving whatever one file does
                job.error, job.state = f"{job.input}: {type(err).__name__}: {err}", "failed"
            job.answered = time.perf_counter()
            job.finished.set()
            if job.state == "done" and job.annotate:
                job.video = "drawing"
                try:
                    self._draw(job)
                    job.video = "ready"
                except Exception as err:
                    job.video, job.error = "failed", f"annotated video: {err}"
            self._prune()

    def close(self) -> None:
        """Stop the worker after the job it runs and remove every job's folder."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
