"""Audio: extraction from video with ffmpeg, silence check, fixed-length waveforms, log-mel spectrograms."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ffmpeg
import imageio_ffmpeg
import numpy as np
import soundfile as sf

from .io import atomic_path

# Silence: the loudest 50 ms frame stays below this. RAVDESS video-only tracks sit near -91 dBFS or are
# digital zero; the quietest real speech of ravdess-lite peaks near -54 dBFS.
SILENCE_DBFS = -70.0


@dataclass
class AudioResult:
    clip: str
    status: str  # ok | no_audio | silent | failed
    rms_dbfs: float | None = None
    seconds: float | None = None
    message: str = ""


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def decode_audio(video: Path, sample_rate: int) -> np.ndarray | None:
    """Mono float32 samples of the first audio stream, or None when the file has no audio stream.

    Raises RuntimeError naming the file when ffmpeg cannot read it."""
    stream = ffmpeg.input(str(video)).output("pipe:", format="f32le", ac=1, ar=sample_rate, vn=None)
    try:
        out, _ = stream.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as err:
        stderr = err.stderr.decode(errors="replace")
        if "does not contain any stream" in stderr or "matches no streams" in stderr:
            return None
        last = [line for line in stderr.strip().splitlines() if line.strip()][-1:] or ["unknown error"]
        raise RuntimeError(f"{video}: ffmpeg cannot decode it ({last[0].strip()})") from None
    return np.frombuffer(out, dtype=np.float32).copy()


def rms_dbfs(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20 * np.log10(max(rms, 1e-12))


def peak_frame_dbfs(samples: np.ndarray, sample_rate: int, frame_ms: float = 50) -> float:
    """RMS level of the loudest frame: a quiet speaker still peaks well above a silent track."""
    size = max(1, int(sample_rate * frame_ms / 1000))
    frames = samples[:len(samples) // size * size].reshape(-1, size) if len(samples) >= size else samples[None]
    loudest = float(np.sqrt(np.square(frames, dtype=np.float64).mean(axis=1)).max()) if frames.size else 0.0
    return 20 * np.log10(max(loudest, 1e-12))


def extract_audio(video: Path, wav: Path, sample_rate: int) -> AudioResult:
    """Write `wav` (16-bit mono) from `video`; report missing, silent or unreadable audio."""
    clip = Path(video).stem
    try:
        samples = decode_audio(video, sample_rate)
    except RuntimeError as err:
        return AudioResult(clip, "failed", message=str(err))
    if samples is None:
        return AudioResult(clip, "no_audio", message=f"{video}: has no audio stream")
    if samples.size == 0:
        return AudioResult(clip, "failed", message=f"{video}: no audio samples could be decoded "
                                                   "(corrupt or truncated file)")
    level, peak = rms_dbfs(samples), peak_frame_dbfs(samples, sample_rate)
    seconds = len(samples) / sample_rate
    if peak < SILENCE_DBFS:
        return AudioResult(clip, "silent", round(level, 1), seconds,
                           f"{video}: audio is silent (loudest 50 ms at {peak:.1f} dBFS, below {SILENCE_DBFS:.0f})")
    with atomic_path(wav) as tmp:
        sf.write(tmp, samples, sample_rate, subtype="PCM_16", format="WAV")
    return AudioResult(clip, "ok", round(level, 1), round(seconds, 3))


def load_wav(path: Path, sample_rate: int) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise RuntimeError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz")
    return samples.mean(axis=1)


def fix_length(samples: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """Crop from `offset` or zero-pad at the end to exactly `length` samples."""
    window = samples[offset:offset + length]
    return np.pad(window, (0, length - len(window)))


class LogMel:
    """Log-mel spectrogram (dB) with the settings of params.yaml `audio`."""

    def __init__(self, sample_rate: int, n_mels: int, n_fft: int, hop_ms: float):
        import torchaudio

        self.transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=int(sample_rate * hop_ms / 1000), n_mels=n_mels)
        self.to_db = torchaudio.transforms.AmplitudeToDB(top_db=80)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.to_db(self.transform(torch.from_numpy(samples))).numpy()
