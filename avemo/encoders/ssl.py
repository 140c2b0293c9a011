"""Self-supervised speech encoders of torchaudio's pipelines: WAV2VEC2_BASE, HUBERT_BASE, WAVLM_BASE_PLUS.

`weights: pretrained` loads the bundle's published weights through torchaudio (downloaded to the torch
hub cache on first use); `weights: none` builds the same architecture with random weights (seeded), which
is what machines without internet can test; every metric records which was used. The encoder's states of
one transformer layer (`layer`, 1-based; the middle layers carry the most paralinguistic information),
averaged over `pool` steps of 20 ms."""
from __future__ import annotations

from functools import lru_cache, partial

import numpy as np
import torch

from ..errors import StageError
from .spec import Encoder, EncoderSpec

BUNDLES = {"wav2vec2": "WAV2VEC2_BASE", "hubert": "HUBERT_BASE", "wavlm": "WAVLM_BASE_PLUS"}
ARCHITECTURES = {"wav2vec2": "wav2vec2_base", "hubert": "hubert_base", "wavlm": "wavlm_base"}


@lru_cache(maxsize=3)
def load_ssl(name: str, weights: str = "pretrained"):
    """(model in eval mode, weights name) for `name` in BUNDLES."""
    import torchaudio

    bundle_name = BUNDLES[name]
    if weights in (None, "none"):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = getattr(torchaudio.models, ARCHITECTURES[name])()
        return model.eval(), f"{bundle_name}:random-init"
    bundle = getattr(torchaudio.pipelines, bundle_name)
    try:
        model = bundle.get_model()
    except Exception as err:  # noqa: BLE001 - URLError, HTTPError, RuntimeError of a partial file...
        raise StageError(f"torchaudio {bundle_name}: cannot load the pretrained weights ({type(err).__name__}); "
                         f"on a machine without internet put {bundle._path} into "
                         f"{torch.hub.get_dir()}/checkpoints, or set weights: none (random, recorded)") from None
    return model.eval(), f"{bundle_name}:pretrained"


@torch.no_grad()
def encode(model, windows: np.ndarray, layer: int, pool: int = 3) -> np.ndarray:
    """(n, samples) 16 kHz windows -> (n, steps // pool, 768) states of transformer layer `layer`."""
    features, _ = model.extract_features(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)),
                                         num_layers=layer)
    states = features[layer - 1].numpy()
    steps = states.shape[1] // pool * pool
    return states[:, :steps].reshape(len(states), steps // pool, pool, -1).mean(axis=2)


def load(name: str, cfg: dict, context) -> Encoder:
    model, used = load_ssl(name, cfg["weights"])
    return Encoder(name, "audio", used, cfg, lambda window: encode(model, window[None], cfg["layer"], cfg["pool"])[0])


OFFLINE_HINT = "no offline copy exists: weights: none builds it with random weights (recorded in every metric)"
ENCODERS = tuple(EncoderSpec(name, "audio", ("weights", "layer", "pool"), partial(load, name), shape=(49, 768),
                             offline=OFFLINE_HINT, random_weights={"weights": "none"}) for name in BUNDLES)
