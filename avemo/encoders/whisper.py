"""Speech encoder: the encoder of OpenAI Whisper through faster-whisper (CTranslate2).

`WhisperModel(size)` loads the model as faster-whisper always does (downloaded from the Hugging Face hub
on first use; HF_HUB_OFFLINE=1 with a filled cache on machines without internet). The encoder takes the
audio window directly, without padding to 30 s: 3 s of 16 kHz audio -> 300 log-mel frames -> (150, 512)
states for `base`, 20 ms apart. Stored time-pooled by `pool` (3: 60 ms steps) to keep the files small."""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from ..errors import StageError
from ..io import choice
from .spec import Encoder, EncoderSpec

SIZES = ("tiny", "base", "small", "medium", "large-v3", "distil-large-v3")
SAMPLE_RATE = 16000
OFFLINE_HINT = ("offline: scripts/offline-weights.sh TOOLS_DIR fills the Hugging Face cache for `base`; "
                "then run with HF_HUB_OFFLINE=1")


@lru_cache(maxsize=2)
def load_whisper(size: str = "base", device: str = "cpu", threads: int = 1):
    """faster_whisper.WhisperModel(size) (cached per process), float32 on CPU, float16 on CUDA."""
    from faster_whisper import WhisperModel

    compute = "float16" if device == "cuda" else "float32"
    try:
        return WhisperModel(size, device=device, compute_type=compute, cpu_threads=threads)
    except Exception as err:  # noqa: BLE001 - hub errors (LocalEntryNotFoundError, HTTP...) share no base class
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise StageError(f"Whisper '{size}': cannot load the model ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0][:120] if str(err).strip() else ''})"
                         + (f"; {OFFLINE_HINT}" if offline or size == "base" else "")) from None


def weights_name(size: str) -> str:
    return f"whisper-{size}:openai"


def log_mel(model, windows: np.ndarray) -> np.ndarray:
    """(n, samples) 16 kHz windows -> (n, n_mels, frames) Whisper log-mel, an even number of frames."""
    mels = np.stack([model.feature_extractor(w.astype(np.float32)) for w in windows])
    return mels[..., :mels.shape[-1] // 2 * 2]


def encode(model, windows: np.ndarray, pool: int = 3) -> np.ndarray:
    """(n, samples) windows -> (n, frames // (2 * pool), d) encoder states averaged over `pool` steps."""
    import ctranslate2

    mels = log_mel(model, windows)
    states = np.asarray(model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)),
                                           to_cpu=True), dtype=np.float32)
    steps = states.shape[1] // pool * pool
    return states[:, :steps].reshape(len(states), steps // pool, pool, -1).mean(axis=2)


def load(cfg: dict, context) -> Encoder:
    choice(cfg["model"], SIZES, "features.audio.whisper.model")
    model = load_whisper(cfg["model"], context.device)
    return Encoder("whisper", "audio", weights_name(cfg["model"]), cfg,
                   lambda window: encode(model, window[None], cfg["pool"])[0])


ENCODERS = (EncoderSpec("whisper", "audio", ("model", "pool"), load, shape=(50, 512), offline=OFFLINE_HINT,
                        pooling="mean_std"),)
