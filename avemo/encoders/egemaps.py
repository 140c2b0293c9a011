"""openSMILE eGeMAPSv02 functionals (Eyben et al. 2016): 88 hand-made voice features of the audio window,
the speech side of the classical baselines. openSMILE ships its own library in the `opensmile` wheel."""
from __future__ import annotations

import threading

import numpy as np

from .spec import Encoder, EncoderSpec

EGEMAPS_SIZE = 88
# Shortest audio given to openSMILE: its F0 and jitter/shimmer need voiced stretches of several 60 ms
# frames, and below ~0.1 s it returns NaN; half a second still holds a syllable or two.
MIN_WINDOW_S = 0.5

_local = threading.local()


def smile():
    """One openSMILE extractor (eGeMAPSv02 functionals) per thread: an instance is not shared safely."""
    if getattr(_local, "smile", None) is None:
        import opensmile

        _local.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                       feature_level=opensmile.FeatureLevel.Functionals)
    return _local.smile


def egemaps_names() -> list[str]:
    return list(smile().feature_names)


def egemaps_features(window: np.ndarray, sample_rate: int) -> np.ndarray:
    """(88,) functionals of the window, without the zero padding at its end (padding would add silence to
    the loudness and voicing statistics). Too short, silent or failed windows raise ValueError saying why."""
    from ..audio import SILENCE_DBFS, peak_frame_dbfs

    samples = np.trim_zeros(np.asarray(window, dtype=np.float32), "b")
    if len(samples) < MIN_WINDOW_S * sample_rate:
        raise ValueError(f"only {len(samples) / sample_rate:.2f} s of audio in the window; eGeMAPS needs at least "
                         f"{MIN_WINDOW_S:g} s")
    peak = peak_frame_dbfs(samples, sample_rate)
    if peak < SILENCE_DBFS:
        raise ValueError(f"the window is silent (loudest 50 ms at {peak:.1f} dBFS, below {SILENCE_DBFS:.0f})")
    try:
        values = smile().process_signal(samples, sample_rate).to_numpy(dtype=np.float64).reshape(-1)
    except Exception as err:  # noqa: BLE001 - openSMILE's own errors have no common base class
        raise ValueError(f"openSMILE failed ({type(err).__name__}: {err})") from None
    if values.shape != (EGEMAPS_SIZE,) or not np.isfinite(values).all():
        raise ValueError(f"openSMILE gave {values.size} values, {int((~np.isfinite(values)).sum())} not finite")
    return values.astype(np.float32)


def load(cfg: dict, context) -> Encoder:
    import opensmile

    return Encoder("egemaps", "audio", f"opensmile-{opensmile.__version__}:eGeMAPSv02", cfg,
                   lambda window: egemaps_features(window, context.sample_rate))


ENCODERS = (EncoderSpec("egemaps", "audio", (), load, shape=(EGEMAPS_SIZE,), pooling="flatten"),)
