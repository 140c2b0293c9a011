"""--enroll: other clips of the person in the video, preprocessed by the same per-clip path, whose inputs give
that person's statistics (the speaker_adapted protocol; avemo.normalize). The clip being scored is never
one of them: a file that is the input itself is left out, and so are files without a face or sound."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StageError
from .clip import clip_inputs
from .predictor import Predictor

MEDIA_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wav", ".mp3", ".flac", ".m4a"}


@dataclass
class Enrolment:
    inputs: dict[str, np.ndarray]  # each input of the model, stacked over the enrolment clips that gave it
    files: list[str]
    skipped: list[dict] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.files)

    def covers(self, needs) -> bool:
        """Whether some enrolment clip gave every input in `needs` (a branch of the model)."""
        return all(name in self.inputs for name in needs)

    def summary(self) -> dict:
        return {"clips": self.count, "files": self.files, "skipped": self.skipped}


def enrolment_files(specs: list[str | Path]) -> list[Path]:
    """Files named, and the media files of directories named (sorted)."""
    files = []
    for spec in map(Path, specs):
        if spec.is_dir():
            files += sorted(p for p in spec.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
        elif spec.is_file():
            files.append(spec)
        else:
            raise StageError(f"--enroll {spec}: no such file or directory")
    return files


def build_enrolment(specs: list[str | Path], predictor: Predictor, scored: Path | None = None) -> Enrolment:
    """The enrolment clips' inputs for `predictor`; the scored file and clips that cannot give the model's
    inputs (no face, no sound, unreadable) are skipped with the reason."""
    scored = Path(scored).resolve() if scored is not None else None
    collected, used, skipped = [], [], []
    for path in enrolment_files(specs):
        if scored is not None and path.resolve() == scored:
            skipped.append({"file": str(path), "reason": "the clip being scored is never its own enrolment"})
            continue
        try:
            inputs, model, *_ = clip_inputs(path, predictor)
        except StageError as err:
            skipped.append({"file": str(path), "reason": str(err)})
            continue
        collected.append(inputs)
        used.append(str(path))
    if not collected:
        reasons = "; ".join(s["reason"] for s in skipped[:3]) or "no media files"
        raise StageError(f"--enroll: no usable enrolment clip ({reasons})")
    return Enrolment({name: np.stack([c[name] for c in collected if name in c]) for name in predictor.needs
                      if any(name in c for c in collected)}, used, skipped)
