"""Every failure the pipeline explains itself, in one place. Stage scripts and `avemo` commands end a
known failure with one line `error: <file or key>: <what is wrong>` and exit code 1 (avemo.entry)."""
from __future__ import annotations


class StageError(RuntimeError):
    """A failure a stage explains itself (bad input file, missing weights...)."""


class ParamError(ValueError):
    """A parameter value that the pipeline cannot use."""


class DownloadError(RuntimeError):
    """An archive that could not be fetched, verified or read."""


class BadClipName(ValueError):
    """A file name that does not follow the RAVDESS naming scheme."""


class LeakageError(ValueError):
    """A split that would put one actor (speaker) in two partitions, or two copies of one take."""


class VideoError(RuntimeError):
    """A video that cannot be opened or decoded."""


class WriteError(OSError):
    """An output file that could not be written (full disk, file size limit, permissions...)."""

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror})"


KNOWN_FAILURES = (StageError, ParamError, DownloadError, BadClipName, LeakageError, VideoError)
