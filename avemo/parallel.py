"""Per-clip work over a pool of worker processes or threads, with a progress bar.

Threads suit work that waits on a subprocess or releases the GIL (extract_audio's ffmpeg); processes
suit work that holds the GIL in Python or whose libraries keep their own thread pools (faces: PyAV,
OpenCV and torch). Worker processes start from a fork server (Linux, macOS; spawn elsewhere) that has
imported the work's module but never run OpenCV's or OpenMP's thread pools: forking a process that has
used them can deadlock the child (seen: cv2.setNumThreads hanging in a worker forked from a pytest
process). So `work`, the items and the results must pickle (a module-level function, or a
functools.partial of one). Each worker process gets an equal share of the CPUs for its libraries' own
threads (`thread_budget`), so N workers never start N x cores threads; a worker dies with its parent
(a killed stage leaves no orphans writing behind it)."""
from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import TypeVar

from tqdm import tqdm

from .errors import ParamError

T = TypeVar("T")
R = TypeVar("R")

_budget = 0  # CPU threads this process's libraries may use; 0 = their defaults (every core)
_installed: Callable | None = None  # the work of a forked worker process


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_workers(value, key: str) -> int:
    """`workers` of params.yaml: a whole number >= 1, or `auto` (one per available CPU)."""
    if value == "auto":
        return available_cpus()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamError(f"{key}: {value!r} is not valid; give a whole number of workers >= 1 or auto")
    return value


def thread_budget() -> int:
    return _budget


def limit_threads(count: int) -> None:
    """Let this process's libraries use `count` threads (0: their defaults). Torch and OpenCV are told
    now if imported; the video decoder reads thread_budget() when it opens a file."""
    global _budget
    _budget = count
    if count <= 0:
        return
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _start_worker(work: Callable, budget: int, initializer: Callable | None) -> None:
    global _installed
    _die_with_parent()
    _installed = work
    limit_threads(budget)
    if initializer is not None:
        initializer()


def _run_installed(item):
    return _installed(item)


def _process_context():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("forkserver")


def _pool(work: Callable, workers: int, processes: bool, initializer: Callable | None,
          preload: list[str]) -> tuple[Executor, Callable]:
    if processes:
        context = _process_context()
        if context.get_start_method() == "forkserver":  # the server imports these once, its workers inherit them
            context.set_forkserver_preload([getattr(work, "func", work).__module__, *preload])
        budget = max(1, available_cpus() // workers)
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                   initargs=(work, budget, initializer))
        return pool, _run_installed
    if initializer is not None:
        initializer()
    return ThreadPoolExecutor(max_workers=workers), work


def map_clips(work: Callable[[T], R], items: Iterable[T], workers: int, desc: str, processes: bool = False,
              initializer: Callable[[], None] | None = None, stop: Callable[[R], bool] | None = None,
              preload: tuple[str, ...] = ()) -> list[R | None]:
    """`work(item)` for every item, results in the items' order. workers <= 1: in this process.
    `initializer` runs once per worker (or once here). A result for which `stop(result)` is true cancels
    the items not started yet; theirs stay None. `preload`: modules the fork server imports for all
    workers (heavy libraries the work imports lazily)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        if initializer is not None:
            initializer()
        results: list = []
        for item in tqdm(items, desc=desc, unit="clip"):
            results.append(work(item))
            if stop is not None and stop(results[-1]):
                return results + [None] * (len(items) - len(results))
        return results
    results = [None] * len(items)
    pool, call = _pool(work, min(workers, len(items)), processes, initializer, list(preload))
    with pool:
        futures = {pool.submit(call, item): index for index, item in enumerate(items)}
        pending = set(futures)
        bar = tqdm(total=len(items), desc=desc, unit="clip")
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.cancelled():
                    continue
                results[futures[future]] = future.result()
                bar.update()
                if stop is not None and stop(results[futures[future]]):
                    for other in pending:
                        other.cancel()
        bar.close()
    return results


def imap_clips(work: Callable[[T], R], items: Iterable[T], workers: int, processes: bool = True,
               initializer: Callable[[], None] | None = None, preload: tuple[str, ...] = ()):
    """`(item, work(item))` for every item as each finishes (any order), for callers that write results
    as they come; same pools and rules as map_clips. workers <= 1: in this process, in order."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        if initializer is not None:
            initializer()
        for item in items:
            yield item, work(item)
        return
    pool, call = _pool(work, min(workers, len(items)), processes, initializer, list(preload))
    with pool:
        futures = {pool.submit(call, item): item for item in items}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()
