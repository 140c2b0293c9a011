"""Atomic file output, JSON helpers and parameter loading shared by every stage."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import yaml


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    A killed or failed writer leaves at most a `.tmp-*` file that no reader trusts; works for files
    and directories alike."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def remove_stale_temporaries(directory: str | Path) -> int:
    """Delete `.tmp-*` leftovers of an interrupted run; return how many were removed."""
    count = 0
    for leftover in Path(directory).glob(".tmp-*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        count += 1
    return count


class ParamError(ValueError):
    """A parameter value that the pipeline cannot use."""


def load_params(section: str | None = None, path: str | Path = "params.yaml") -> dict:
    """Read params.yaml (or one top-level section of it), with a clear error for a broken file."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamError(f"{path}: parameter file not found") from None
    except yaml.YAMLError as err:
        raise ParamError(f"{path}: not valid YAML: {err}") from None
    if section is None:
        return params
    if section not in params:
        raise ParamError(f"{path}: section '{section}' is missing")
    return params[section]


def choice(value, valid, name: str):
    """Validate a choice parameter early, naming the valid options."""
    if value not in valid:
        raise ParamError(f"{name}: '{value}' is not valid; choose one of: {', '.join(map(str, valid))}")
    return value
