"""The clip metadata table (one row per clip, parsed from its RAVDESS id)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .ids import parse_clip_id
from .io import atomic_path


def metadata_frame(clips_dir: Path) -> pd.DataFrame:
    rows = [parse_clip_id(p).as_row() | {"file": p.name} for p in sorted(Path(clips_dir).glob("*.mp4"))]
    return pd.DataFrame(rows)


def write_metadata(clips_dir: Path, out: Path) -> int:
    frame = metadata_frame(clips_dir)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    return len(frame)


def read_metadata(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"clip_id": str})
