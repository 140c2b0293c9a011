"""Many files in one run: the model loaded once per worker process, files spread over `workers`
processes, one CSV or JSONL row per file written as soon as it is predicted (a bad file is an error row,
not a stop), and a rerun with the same output skipping the files it already holds.

Rows name the file (absolute path), the label, the calibrated probabilities, the branch that answered,
the model and the notes, or the error. The result keys `branch` and `model_info` are read with .get: a
model without them leaves those cells empty."""
from __future__ import annotations

import csv
import functools
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import KNOWN_FAILURES, StageError
from ..io import atomic_path, write_error

FIXED_COLUMNS = ("input", "status", "label", "confidence", "branch", "model", "model_source")
TAIL_COLUMNS = ("audio_padding_s", "notes", "error", "seconds")
FORMATS = (".csv", ".jsonl")

_worker: dict = {}  # the model of this worker process (load_worker)


def input_key(path: str | Path) -> str:
    """How a file is named in rows and recognised on a rerun: its absolute path (symlinks kept)."""
    return os.path.abspath(path)


def columns(classes: list[str]) -> list[str]:
    return [*FIXED_COLUMNS, *(f"p_{c}" for c in classes), *TAIL_COLUMNS]


def result_row(result: dict) -> dict:
    """A clip-mode result (ClipResult.as_dict) -> one row."""
    info = result.get("model_info") or {}
    audio = result.get("audio") or {}
    return {"input": input_key(result["input"]), "status": "ok", "label": result["label"],
            "confidence": result["confidence"], "branch": result.get("branch") or result.get("inputs"),
            "model": info.get("name") or result.get("used_model") or result.get("model"),
            "model_source": info.get("source"), "probabilities": result["probabilities"],
            "audio_padding_s": audio.get("padding_s"), "notes": list(result.get("notes") or []), "error": None,
            "seconds": result.get("seconds")}


def error_row(path: str | Path, message: str) -> dict:
    return {"input": input_key(path), "status": "error", "label": None, "confidence": None, "branch": None,
            "model": None, "model_source": None, "probabilities": {}, "audio_padding_s": None, "notes": [],
            "error": message, "seconds": None}


def flat_row(row: dict, classes: list[str]) -> dict:
    """A row as CSV cells: p_<class> columns, notes joined by '; ', empty cells for None."""
    cells = {k: row.get(k) for k in (*FIXED_COLUMNS, *TAIL_COLUMNS)}
    cells.update({f"p_{c}": row["probabilities"].get(c) for c in classes})
    cells["notes"] = "; ".join(row.get("notes") or [])
    return {k: "" if cells[k] is None else cells[k] for k in columns(classes)}


def failure_message(path: str | Path, err: BaseException) -> str:
    """An error row's text: the known failures' own message (they name the file), else the file and the
    exception."""
    text = str(err)
    if isinstance(err, KNOWN_FAILURES) or isinstance(err, OSError):
        return text if str(path) in text else f"{path}: {text}"
    return f"{path}: {type(err).__name__}: {text}"


@dataclass
class Job:
    """What every worker needs to predict a file: the model by name or path, the audio fallback, threads."""
    model: str
    models_dir: Path
    fallback: str | None = None
    threads: int = 1


def load_worker(job: Job) -> None:
    """Load the model once in this process (the initializer of each worker)."""
    from .loading import load_predictor

    if job.threads > 0:
        import torch

        torch.set_num_threads(job.threads)
    _worker["predictor"] = load_predictor(job.model, job.models_dir)
    _worker["fallback"] = load_predictor(job.fallback, job.models_dir) if job.fallback else None
    _worker["models_dir"] = job.models_dir


def predict_row(path: str) -> dict:
    """One file -> its row; any failure -> an error row (the batch goes on)."""
    from .clip import predict_clip

    try:
        result = predict_clip(path, _worker["predictor"], _worker["fallback"], _worker["models_dir"])
        return result_row(result.as_dict())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # noqa: BLE001 - a bad file must be a row, whatever went wrong
        return error_row(path, failure_message(path, err))


# ------------------------------------------------------------------ the output file


def read_done(path: Path) -> tuple[set[str], int]:
    """The inputs an earlier run wrote rows for, and how many bytes of the file are whole rows (a run
    killed mid-row leaves a partial last line, which is dropped)."""
    if not path.exists() or path.stat().st_size == 0:
        return set(), 0
    data = path.read_bytes()
    whole = data.rfind(b"\n") + 1
    text = data[:whole].decode("utf-8", errors="replace")
    done = set()
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    done.add(json.loads(line)["input"])
                except (ValueError, KeyError, TypeError):
                    raise StageError(f"{path}: line {number} is not a row of avemo predict (JSON with 'input'); "
                                     "give another --output or remove the file") from None
    else:
        for record in csv.DictReader(io.StringIO(text)):
            if "input" not in record:
                raise StageError(f"{path}: not a CSV of avemo predict (no 'input' column); give another --output")
            done.add(record["input"])
    return done, whole


def csv_header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open(newline="") as handle:
        return next(csv.reader(handle), None)


class RowWriter:
    """Appends one row per file to a CSV or JSONL file, flushed at once; `done` holds the inputs of rows
    already there (a rerun skips them). Full disk and other write failures name the file."""

    def __init__(self, path: Path, classes: list[str]):
        self.path, self.classes = Path(path), classes
        if self.path.suffix.lower() not in FORMATS:
            raise StageError(f"{path}: --output writes .csv or .jsonl; give a path ending in .csv")
        self.done, whole = read_done(self.path)
        self.header = columns(classes)
        found = csv_header(self.path) if self.path.suffix.lower() == ".csv" else None
        if found is not None and found != self.header:
            raise StageError(f"{path}: its columns are not this model's ({', '.join(found[:10])}...); give "
                             "another --output")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and whole < self.path.stat().st_size:
                os.truncate(self.path, whole)  # a partial row of a killed run
            self.handle = self.path.open("a", newline="", encoding="utf-8")
            if found is None and self.path.suffix.lower() == ".csv":
                self._write(self._csv_line(dict(zip(self.header, self.header))))
        except OSError as err:
            raise write_error(self.path, err) from None

    def _csv_line(self, cells: dict) -> str:
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=self.header, lineterminator="\n").writerow(cells)
        return buffer.getvalue()

    def _write(self, text: str) -> None:
        try:
            self.handle.write(text)
            self.handle.flush()
            os.fsync(self.handle.fileno())
        except OSError as err:
            raise write_error(self.path, err) from None

    def write(self, row: dict) -> None:
        if self.path.suffix.lower() == ".jsonl":
            self._write(json.dumps(row, default=str) + "\n")
        else:
            self._write(self._csv_line(flat_row(row, self.classes)))
        self.done.add(row["input"])

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError as err:
            raise write_error(self.path, err) from None


def drop_error_rows(path: Path) -> int:
    """Remove an output's error rows (atomically) so that a rerun tries those files again; returns how many."""
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if path.suffix.lower() == ".jsonl":
        kept = [line for line in lines if not line.strip() or json.loads(line).get("status") != "error"]
    else:
        header, rows = lines[:1], list(csv.DictReader(io.StringIO("".join(lines))))
        kept = header + [line for line, row in zip(lines[1:], rows) if row.get("status") != "error"]
    try:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(kept), encoding="utf-8")
    except OSError as err:
        raise write_error(path, err) from None
    return len(lines) - len(kept)


# ------------------------------------------------------------------ the run


@dataclass
class BatchSummary:
    output: str | None
    total: int
    skipped: int
    ok: int = 0
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"output": self.output, "files": self.total, "skipped_done": self.skipped, "ok": self.ok,
                "errors": len(self.errors), "failed": [r["input"] for r in self.errors]}


def predict_rows(files: Iterable[Path], job: Job, workers: int = 1) -> Iterator[dict]:
    """A row per file as each is done: one worker process per `workers` (each loads the model once), or
    this process for workers <= 1."""
    from ..parallel import imap_clips

    for _, row in imap_clips(predict_row, [str(f) for f in files], workers, processes=True,
                             initializer=functools.partial(load_worker, job),
                             preload=("avemo.predict.clip", "avemo.predict.loading")):
        yield row


def run_batch(files: list[Path], job: Job, classes: list[str], output: Path | None = None, workers: int = 1,
              on_row: Callable[[dict], None] | None = None, progress: bool = True) -> BatchSummary:
    """Predict `files`, writing each row to `output` (.csv or .jsonl) as it comes and calling `on_row`;
    files that `output` already holds a row for are skipped."""
    from tqdm import tqdm

    writer = RowWriter(output, classes) if output is not None else None
    todo = [f for f in files if writer is None or input_key(f) not in writer.done]
    summary = BatchSummary(str(output) if output else None, len(files), len(files) - len(todo))
    bar = tqdm(total=len(todo), unit="file", desc="predict", disable=not progress or len(todo) <= 1)
    try:
        for row in predict_rows(todo, job, workers):
            if writer is not None:
                writer.write(row)
            if row["status"] == "ok":
                summary.ok += 1
            else:
                summary.errors.append(row)
            if on_row is not None:
                on_row(row)
            bar.update()
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return summary
