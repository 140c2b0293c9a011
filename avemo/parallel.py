"""Per-clip work over a thread pool with a progress bar (ffmpeg and OpenCV release the GIL)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def map_clips(work: Callable[[T], R], items: Iterable[T], workers: int, desc: str) -> list[R]:
    items = list(items)
    if workers <= 1:
        return [work(item) for item in tqdm(items, desc=desc, unit="clip")]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(work, items), total=len(items), desc=desc, unit="clip"))
