"""Common entry behaviour of stage scripts: known failures end with one clear line, exit code 1."""
from __future__ import annotations

import sys
from typing import Callable

from .download import DownloadError
from .ids import BadClipName
from .io import ParamError


class StageError(RuntimeError):
    """A failure a stage explains itself (bad input file, missing weights...)."""


KNOWN_FAILURES = (StageError, DownloadError, ParamError, BadClipName)


def run_stage(body: Callable[[], object]) -> None:
    try:
        body()
    except KNOWN_FAILURES as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
