"""Atomic file output, JSON helpers and parameter loading shared by every stage."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml
from .errors import ParamError, WriteError


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
            # A directory cannot be replaced by a rename: move the finished old one aside first, so
            # that it is deleted only once the new one is in place (and put back if that fails).
            old = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-old-", dir=target.parent))
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except OSError:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_error(path: str | Path, err: OSError) -> WriteError:
    """`err` restated as a WriteError naming `path` (the file meant, not its temporary name)."""
    if isinstance(err, WriteError):
        return err
    return WriteError(err.errno, err.strerror or str(err), str(path))


def as_final(err: OSError, tmp: str | Path, target: str | Path) -> WriteError:
    """A write error inside the temporary folder of `atomic_path(target)`, naming the file's final path."""
    err = err if isinstance(err, WriteError) else write_error(err.filename or tmp, err)
    try:
        return WriteError(err.errno, err.strerror, str(Path(target) / Path(err.filename).relative_to(tmp)))
    except ValueError:
        return err


def write_json(path: str | Path, data) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except OSError as err:
        raise write_error(path, err) from None


def write_bytes(path: str | Path, data: bytes) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as err:
        raise write_error(path, err) from None


NPZ_DATE = (1980, 1, 1, 0, 0, 0)


def save_npz(target, arrays: dict) -> None:
    """np.savez, but the same bytes on every Python: np.savez forces a zip64 header that patch releases write
    differently (3.11.2 and 3.11.7), which changed dvc.lock on another interpreter. No pickles."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            member = BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=NPZ_DATE)
            info.external_attr = 0o600 << 16
            archive.writestr(info, member.getvalue())


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def remove_stale_temporaries(directory: str | Path, name: str | None = None) -> int:
    """Delete `.tmp-*` leftovers of an interrupted run (only those of `atomic_path(directory / name)`
    when `name` is given); return how many were removed."""
    count = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    for leftover in directory.glob(f".tmp-{name}-*" if name else ".tmp-*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        count += 1
    return count


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
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of sections, found {type(params).__name__}")
    if section not in params:
        raise ParamError(f"{path}: section '{section}' is missing")
    if not isinstance(params[section], dict):
        raise ParamError(f"{path}: section '{section}' must be a mapping of keys, found {params[section]!r}")
    return params[section]


def choice(value, valid, name: str):
    """Validate a choice parameter early, naming the valid options."""
    if value not in valid:
        raise ParamError(f"{name}: '{value}' is not valid; choose one of: {', '.join(map(str, valid))}")
    return value
