"""Input and output paths of `avemo predict`: many inputs (files, directories, globs) expanded into files,
and output paths checked before any work: never onto an input, always with the suffix of its format."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from ..errors import StageError

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".wma")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + AUDIO_SUFFIXES

# what each output option writes: its suffixes (the first is the one suggested)
OUTPUT_FORMATS = {
    "--output": (".csv", ".jsonl"),
    "--timeline": (".csv", ".json"),
    "--per-frame": (".csv", ".json"),
    "--annotate": (".mp4",),
    "--plot": (".png", ".svg", ".pdf"),
}


def is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_SUFFIXES


def media_in(directory: Path) -> list[Path]:
    """Video and audio files under `directory` (recursively, hidden ones left out), sorted."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".") and is_media(Path(f))]
    return sorted(found)


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given; directories -> the media files under them; glob patterns -> what they match.
    A path that does not exist stays in the list (it becomes an error row); a pattern matching nothing
    or a directory without media is refused, naming it. Each file once, in the order given."""
    seen, out = set(), []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = media_in(path)
            if not found:
                raise StageError(f"{item}: directory holds no video or audio file ({', '.join(MEDIA_SUFFIXES)})")
        elif not path.exists() and glob.has_magic(item):
            found = [Path(p) for p in sorted(glob.glob(item, recursive=True)) if Path(p).is_file()]
            if not found:
                raise StageError(f"{item}: no file matches this pattern")
        else:
            found = [path]
        for file in found:
            key = os.path.abspath(file)
            if key not in seen:
                seen.add(key)
                out.append(file)
    return out


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(option: str, path: Path | None, inputs: list[Path]) -> None:
    """Refuse an output path that resolves to an input (symlinks and hard links included) or whose suffix
    does not match what `option` writes."""
    if path is None:
        return
    for source in inputs:
        if same_file(path, source):
            raise StageError(f"{path}: {option} would overwrite the input {source}; give another path")
    suffixes = OUTPUT_FORMATS[option]
    if path.suffix.lower() not in suffixes:
        raise StageError(f"{path}: {option} writes {' or '.join(suffixes)}; give a path ending in "
                         f"{suffixes[0]}" + (f" (got '{path.suffix}')" if path.suffix else " (no suffix)"))
    if path.is_dir():
        raise StageError(f"{path}: {option} needs a file path, this is a directory")


def check_outputs(outputs: dict[str, Path | None], inputs: list[Path]) -> None:
    """Every output option checked, and no two outputs onto the same file."""
    given = {option: path for option, path in outputs.items() if path is not None}
    for option, path in given.items():
        check_output(option, path, inputs)
    names = list(given.items())
    for i, (first, a) in enumerate(names):
        for second, b in names[i + 1:]:
            if same_file(a, b):
                raise StageError(f"{a}: given to both {first} and {second}; give each its own file")
