"""Common entry behaviour of stage scripts: known failures end with one clear line, exit code 1."""
from __future__ import annotations

import sys
from typing import Callable

from .errors import KNOWN_FAILURES, StageError, WriteError


def os_error_message(err: OSError) -> str:
    """'<path>: <reason>' for a failed file operation (WriteError already reads that way)."""
    if isinstance(err, WriteError) or not err.filename:
        return str(err)
    where = f"{err.filename} -> {err.filename2}" if err.filename2 else err.filename
    return f"{where}: {err.strerror or err}"


def run_stage(body: Callable[[], object]) -> None:
    """Run a stage's body; known failures and file-system errors (missing input, full disk, file too
    large, permissions) end with one line `error: <path>: <reason>` on stderr and exit code 1."""
    try:
        body()
    except KNOWN_FAILURES as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except OSError as err:
        print(f"error: {os_error_message(err)}", file=sys.stderr)
        sys.exit(1)


def write_final_json(files: dict, tmp, target) -> None:
    """JSON files into the temporary folder of `atomic_path(target)`; a failure names the final path
    and says that the previous output is untouched."""
    from .io import as_final, write_json

    try:
        for name, data in files.items():
            write_json(tmp / name, data)
    except OSError as err:
        raise StageError(f"{as_final(err, tmp, target)}; {target} left as it was") from None


def per_clip_main(description: str, section: str, run: Callable) -> None:
    """Command line of the per-clip stages (extract_audio, faces): `run(params[section], raw, out, cache)`."""
    import argparse
    from pathlib import Path

    from .io import load_params

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--raw", type=Path, required=True, help="output of the download stage")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None,
                        help="per-clip result cache (e.g. data/cache); outside the DVC outputs, safe to delete")
    args = parser.parse_args()
    run_stage(lambda: run(load_params(section), args.raw, args.out, args.cache))
