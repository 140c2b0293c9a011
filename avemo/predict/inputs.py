"""Reading an input file the way the stages do: the file check, the audio track (extract_audio's own rules),
the face crops (crop_faces) and the pipeline's fixed audio window."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import extract_audio, load_wav
from ..errors import StageError, VideoError
from ..preprocess import audio_window
from ..faces.clip import FaceTrack, crop_faces


@dataclass
class AudioTrack:
    status: str  # ok | no_audio | silent
    samples: np.ndarray | None
    rate: int
    rms_dbfs: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.samples is None else len(self.samples) / self.rate

    def problem(self, path) -> str:
        if self.status == "no_audio":
            return f"{path}: has no audio stream"
        return f"{path}: audio is silent (RMS {self.rms_dbfs:.1f} dBFS)" if self.status == "silent" else ""

    def summary(self) -> dict:
        return {"status": self.status, "seconds": None if self.seconds is None else round(self.seconds, 3),
                "rms_dbfs": None if self.rms_dbfs is None else round(self.rms_dbfs, 1)}


def check_input(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: input file not found")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise StageError(f"{path}: not a readable file")
    return path


def read_audio(path: Path, sample_rate: int) -> AudioTrack:
    """The extract_audio stage's own code: ffmpeg decode, no-audio/silence rules, 16-bit WAV read back."""
    with tempfile.TemporaryDirectory(prefix="avemo-audio-") as tmp:
        wav = Path(tmp) / "audio.wav"
        result = extract_audio(path, wav, sample_rate)
        if result.status == "failed":
            raise StageError(result.message)
        samples = load_wav(wav, sample_rate) if result.status == "ok" else None
    return AudioTrack(result.status, samples, sample_rate, result.rms_dbfs)


def read_faces(path: Path, faces_cfg: dict) -> tuple[FaceTrack | None, str]:
    """crop_faces, or None and the reason when the file has no decodable video."""
    try:
        return crop_faces(path, faces_cfg), ""
    except VideoError as err:
        return None, str(err)


def clip_audio(samples: np.ndarray, audio_cfg: dict) -> np.ndarray:
    """The pipeline's fixed window: `duration_s` from `offset_s`, zero-padded."""
    return audio_window(samples, audio_cfg)
