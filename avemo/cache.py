"""Content-addressed per-clip cache of stage results, kept outside the stages' DVC outputs.

DVC reruns a whole stage when any dependency changes (one more actor in `data.actors` changes
`data/raw`) and deletes the stage's outputs before running it. A stage that looks each clip up here
first re-processes only the clips it has never seen with the same settings.

Layout: `<root>/<stage>/<key>/` holding `manifest.json` (the clip's result and the sha256 of every
payload file) and the payload files. The key is the sha256 of
  - the clip file's bytes and size (never its name or modification time),
  - the stage's output-relevant parameters,
  - the source of the code that computes the result and the versions of the libraries it calls,
  - the CPU kernel settings of avemo/cpu.py (pinned at AVX2 or not),
so a changed clip, parameter, code file or library version simply misses. Entries are written to a
`.tmp-*` directory and renamed into place; an entry that is missing a file, fails its checksums or
cannot be parsed is deleted and recomputed, never trusted. Deleting the whole cache is always safe.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable

from .cpu import settings as kernel_settings
from .io import remove_stale_temporaries, write_bytes, write_json

FORMAT = 1  # bump to invalidate every entry written by an older layout
MANIFEST = "manifest.json"
CHUNK = 1 << 20
COUNTS = ("hits", "misses", "rejected", "store_failures")


def file_digest(path: str | Path) -> tuple[str, int]:
    """sha256 and size of a file's bytes."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _rebase(value, old: str, new: str):
    """`value` with the clip path it was computed from replaced by the path it is used for now."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_rebase(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _rebase(v, old, new) for k, v in value.items()}
    return value


class ClipCache:
    """Per-clip results of one stage. `root=None` disables caching (every lookup computes).

    `params`: the stage's output-relevant parameters (JSON-serialisable); `code`: the source files whose
    change must invalidate results; `extra`: anything else results depend on (library versions).
    Thread-safe: map_clips calls it from several threads."""

    def __init__(self, root: str | Path | None, stage: str, params: dict, code=(), extra: dict | None = None):
        self.dir = Path(root) / stage if root else None
        self.stage = stage
        code_hash = hashlib.sha256()  # file names and contents only: the checkout may move
        for path in sorted(map(Path, code), key=lambda p: p.name):
            code_hash.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        self.context = json.dumps({"format": FORMAT, "stage": stage, "params": params,
                                   "code": code_hash.hexdigest(), "extra": extra or {},
                                   "kernels": kernel_settings()},  # the CPU kernels pinned or not (avemo/cpu.py)
                                  sort_keys=True, default=str)
        self.hits = self.misses = self.rejected = self.store_failures = 0
        self.leftovers_removed = 0
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        if self.dir is not None:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                self.leftovers_removed = remove_stale_temporaries(self.dir)
            except OSError as err:
                self._warn(f"{self.dir}: cache unusable, every clip is computed ({err.strerror or err})")
                self.dir = None

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    def key(self, source: str | Path) -> str:
        digest, size = file_digest(source)
        return hashlib.sha256(f"{self.context}\n{digest}\n{size}".encode()).hexdigest()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _warn(self, message: str) -> None:
        with self._lock:
            if len(self.warnings) < 20:
                self.warnings.append(message)

    def get(self, key: str, source: str | Path, outputs: dict[str, Path],
            check: Callable[[dict, set[str]], bool] = lambda result, files: True) -> dict | None:
        """The cached result of `key` with its payload files written to `outputs[name]`, or None.

        An entry that cannot be read, fails a checksum or `check(result, file names)` is removed.
        OSError while writing `outputs` (the stage's own output) propagates."""
        if self.dir is None:
            return None
        entry = self.dir / key
        if not entry.exists():
            return None
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
            files = manifest["files"]
            result = manifest["result"]
            if manifest.get("key") != key or not isinstance(result, dict) or not check(result, set(files)):
                raise ValueError("manifest does not match its key or fails the stage's check")
            payload = {}
            for name, expected in files.items():
                data = (entry / name).read_bytes()
                if hashlib.sha256(data).hexdigest() != expected["sha256"]:
                    raise ValueError(f"{name}: checksum mismatch")
                if name not in outputs:
                    raise ValueError(f"{name}: not an output of this stage")
                payload[name] = data
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            self._warn(f"{entry}: cache entry rejected and recomputed ({err})")
            self._count("rejected")
            shutil.rmtree(entry, ignore_errors=True)
            return None
        for name, data in payload.items():
            write_bytes(outputs[name], data)
        self._count("hits")
        return _rebase(result, manifest.get("source", str(source)), str(source))

    def put(self, key: str, source: str | Path, result: dict, outputs: dict[str, Path]) -> None:
        """Store `result` and copies of the files `outputs[name]` that exist. A cache that cannot be
        written (full disk, read-only) is reported as a warning and never fails the stage."""
        if self.dir is None:
            return
        entry = self.dir / key
        tmp = None
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=self.dir))
            files = {}
            for name, path in outputs.items():
                if Path(path).exists():
                    data = Path(path).read_bytes()
                    (tmp / name).write_bytes(data)
                    files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            manifest = {"key": key, "stage": self.stage, "source": str(source), "result": result, "files": files}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            try:
                os.rename(tmp, entry)
                tmp = None
            except OSError:
                if not entry.exists():  # not a concurrent writer's finished entry: a real failure
                    raise
        except OSError as err:
            self._count("store_failures")
            self._warn(f"{err.filename or entry}: cannot write a cache entry ({err.strerror or err})")
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def through(self, source: str | Path, outputs: dict[str, Path], compute: Callable[[], dict],
                keep: Callable[[dict], bool] = lambda result: True,
                check: Callable[[dict, set[str]], bool] = lambda result, files: True) -> dict:
        """Cached result for the clip file `source`, else `compute()` (which writes `outputs`) and store
        it when `keep(result)` (deterministic outcomes only: never a transient failure)."""
        if self.dir is None:
            self._count("misses")
            return compute()
        try:
            key = self.key(source)
        except OSError:  # unreadable clip: let the stage's own code report it
            self._count("misses")
            return compute()
        cached = self.get(key, source, outputs, check)
        if cached is not None:
            return cached
        self._count("misses")
        result = compute()
        if keep(result):
            self.put(key, source, result, outputs)
        return result

    # A ClipCache travels to worker processes (avemo.parallel) without its lock; each process counts its own
    # hits and misses, which the parent adds up from what `take_counts` returns with every result.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def take_counts(self) -> dict:
        """This process's counters and warnings since the last call, reset to zero."""
        counts = {key: getattr(self, key) for key in COUNTS}
        counts["warnings"] = list(self.warnings)
        for key in COUNTS:
            setattr(self, key, 0)
        self.warnings.clear()
        return counts

    def add_counts(self, counts: dict) -> None:
        for key in COUNTS:
            setattr(self, key, getattr(self, key) + counts[key])
        self.warnings.extend(counts["warnings"][:max(0, 20 - len(self.warnings))])

    def summary(self) -> dict:
        return {"dir": str(self.dir) if self.dir else None, "hits": self.hits, "misses": self.misses,
                "rejected": self.rejected, "store_failures": self.store_failures}

    def summary_path(self) -> Path | None:
        """Where the last run's counts go: beside the stage's entries, outside the DVC outputs, so that
        identical results keep identical output hashes."""
        return self.dir.parent / f"{self.stage}.last_run.json" if self.dir else None

    def write_summary(self) -> None:
        if self.dir is not None:
            write_json(self.summary_path(), self.summary())

    def describe(self) -> str:
        if self.dir is None:
            return "cache off"
        text = f"cache {self.hits} hits, {self.misses} misses"
        if self.rejected:
            text += f", {self.rejected} bad entries recomputed"
        if self.store_failures:
            text += f", {self.store_failures} entries not stored"
        return text
