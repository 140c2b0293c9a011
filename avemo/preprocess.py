"""The one per-clip preprocessing path, from a clip's face crops and audio to the model inputs, called by
the encode stages for every clip of the data set and by `predict` for a new video: never a second copy.

Video: the faces stage's crops as stored (a JPEG strip, read back) -> each video encoder -> per-frame
features. Audio: the 16-bit mono wav of extract_audio -> each audio encoder's windows: the fixed window
(audio.offset_s, audio.duration_s, zero-padded), or for an encoder set to `windows: several` windows of
audio.duration_s every `hop_s` seconds over the whole clip, its outputs averaged. Every encoder output is stored as float16, so the
inputs a model sees are float16-rounded, in training and in predict alike. Encoders run on one thread
(BLAS and OpenMP pools included): more threads change the order of floating-point sums, and with it the
last bits of the stored features, which would then depend on the machine and the environment."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from .audio import fix_length
from .faces.strip import load_strip, save_strip

STORED_DTYPE = np.float16


def stored(values: np.ndarray) -> np.ndarray:
    """An encoder output as the encode stages store it and models read it back."""
    return np.asarray(values).astype(STORED_DTYPE).astype(np.float32)


def audio_window(samples: np.ndarray, audio_cfg: dict) -> np.ndarray:
    """The pipeline's fixed window: `duration_s` from `offset_s`, zero-padded at the end."""
    rate = audio_cfg["sample_rate"]
    return fix_length(np.asarray(samples, dtype=np.float32), int(round(audio_cfg["duration_s"] * rate)),
                      int(round(audio_cfg["offset_s"] * rate)))


def several_windows(samples: np.ndarray, audio_cfg: dict, hop_s: float) -> list[np.ndarray]:
    """Windows of `duration_s` every `hop_s` seconds from the clip's start, the last one ending at its end, so
    that every second of the clip is read; a clip no longer than one window is that window, zero-padded."""
    rate = audio_cfg["sample_rate"]
    width, hop = int(round(audio_cfg["duration_s"] * rate)), int(round(hop_s * rate))
    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) <= width:
        return [fix_length(samples, width)]
    starts = list(range(0, len(samples) - width, hop)) + [len(samples) - width]
    return [samples[s:s + width] for s in starts]


def encoder_windows(samples: np.ndarray, audio_cfg: dict, encoder_cfg: dict) -> list[np.ndarray]:
    """The windows of a clip that an audio encoder reads, by its `windows` setting (default: fixed)."""
    if encoder_cfg.get("windows", "fixed") == "several":
        return several_windows(samples, audio_cfg, encoder_cfg["hop_s"])
    return [audio_window(samples, audio_cfg)]


def strip_round_trip(crops: np.ndarray) -> np.ndarray:
    """The crops as the faces stage stores them (JPEG strip) and the encode stages read them back."""
    with tempfile.TemporaryDirectory(prefix="avemo-strip-") as tmp:
        path = Path(tmp) / "strip.jpg"
        save_strip(crops, path)
        return load_strip(path, len(crops))


def face_inputs(crops: np.ndarray, encoders: dict, with_frames: bool = False) -> dict[str, np.ndarray]:
    """Stored face crops (n, s, s, 3) uint8 BGR -> each video encoder's (name -> avemo.encoders.spec.Encoder)
    per-frame features (n, d), and the crops themselves as input 'frames' when asked."""
    with threadpool_limits(limits=1):
        out = {name: stored(encoder.encode(crops)) for name, encoder in encoders.items()}
    if with_frames:
        out["frames"] = crops
    return out


def audio_inputs(samples: np.ndarray, audio_cfg: dict, encoders: dict) -> dict[str, np.ndarray]:
    """A clip's audio samples (audio_cfg: params.yaml `audio`, its window placed at `offset_s`) -> every audio
    encoder's output, averaged over its windows when it reads several."""
    with threadpool_limits(limits=1):
        return {name: stored(mean_output(encoder, encoder_windows(samples, audio_cfg, encoder.config)))
                for name, encoder in encoders.items()}


def mean_output(encoder, windows: list[np.ndarray]) -> np.ndarray:
    outputs = [encoder.encode(window) for window in windows]
    return outputs[0] if len(outputs) == 1 else np.mean(outputs, axis=0)
