"""Every input encoder by name: what it reads (the face crops of a clip, or its audio window), its settings
(params.yaml features.video.NAME / features.audio.NAME), and the function that encodes one clip.

Video encoders, per face crop: `imagenet` (a torchvision ImageNet backbone's embedding), `fer` (FER2013
mini-XCEPTION: 7 expression log-probabilities and 128 features). Audio encoders, of the fixed window
(audio.offset_s, audio.duration_s): `logmel`, `wave` (the samples), `spectrogram` (ImageNet embedding of
the log-mel image), `whisper` (Whisper encoder states), `whisper_layers` (every layer of the Whisper
encoder, pooled or as sequences), `wav2vec2`, `hubert`, `wavlm` (torchaudio),
`egemaps` (openSMILE eGeMAPSv02 functionals)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ParamError

VIDEO_ENCODERS = ("imagenet", "fer")
AUDIO_ENCODERS = ("logmel", "wave", "spectrogram", "whisper", "whisper_layers", "wav2vec2", "hubert", "wavlm",
                  "egemaps")
ENCODERS = VIDEO_ENCODERS + AUDIO_ENCODERS


@dataclass
class Encoder:
    name: str
    modality: str  # video (per face crop) or audio (the window)
    weights: str   # recorded in every metric that uses it
    config: dict   # the settings its output depends on
    encode: Callable[[np.ndarray], np.ndarray]  # one clip: crops (n, s, s, 3) uint8 BGR, or window (samples,)


def modality_of(name: str) -> str:
    if name in VIDEO_ENCODERS:
        return "video"
    if name in AUDIO_ENCODERS:
        return "audio"
    raise ParamError(f"encoder '{name}' unknown; choose one of: {', '.join(ENCODERS)}")


def code_files(name: str) -> list[Path]:
    """The source files whose change must invalidate an encoder's cached per-clip outputs."""
    here = Path(__file__).resolve().parent
    own = {"imagenet": ["imagenet.py"], "fer": ["fer.py", "weights.py"], "logmel": [],
           "wave": [], "spectrogram": ["imagenet.py"], "whisper": ["whisper.py"],
           "whisper_layers": ["whisper_layers.py", "whisper.py"], "wav2vec2": ["ssl.py"],
           "hubert": ["ssl.py"], "wavlm": ["ssl.py"], "egemaps": ["egemaps.py"]}[name]
    return [here / "registry.py", here.parent / "audio.py", *(here / f for f in own)]


def _require(cfg: dict, keys, name: str) -> None:
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ParamError(f"features.{modality_of(name)}.{name}: missing {', '.join(missing)}")


def _logmel(cfg: dict, sample_rate: int):
    from ..audio import LogMel

    _require(cfg, ("n_mels", "n_fft", "hop_ms"), "logmel")
    return LogMel(sample_rate, cfg["n_mels"], cfg["n_fft"], cfg["hop_ms"])


def load_encoder(name: str, cfg: dict, sample_rate: int = 16000, logmel_cfg: dict | None = None,
                 device: str = "cpu") -> Encoder:
    """The encoder `name` with its settings `cfg`; `logmel_cfg` is the log-mel's, which `spectrogram` reads."""
    modality = modality_of(name)
    cfg = dict(cfg or {})
    if name in ("imagenet", "spectrogram"):
        from .imagenet import bgr_to_tensor, embed, load_backbone, spectrogram_to_image

        _require(cfg, ("backbone", "weights"), name)
        with torch.random.fork_rng():  # a random backbone (weights: none) is the same in every process
            torch.manual_seed(0)
            model, _, used = load_backbone(cfg["backbone"], cfg["weights"], f"features.{modality}.{name}")
        model = model.to(device)
        if name == "imagenet":
            return Encoder(name, modality, used, cfg, lambda crops: embed(model, bgr_to_tensor(crops)))
        logmel = _logmel(logmel_cfg or {}, sample_rate)
        cfg["logmel"] = dict(logmel_cfg)
        return Encoder(name, modality, used, cfg,
                       lambda window: embed(model, spectrogram_to_image(logmel(window)[None]))[0])
    if name == "fer":
        from .fer import fer_features, load_fer

        _require(cfg, ("weights", "zoom"), name)
        model, used = load_fer(cfg["weights"])
        return Encoder(name, modality, used, cfg, lambda crops: fer_features(model, crops, cfg["zoom"]))
    if name == "logmel":
        transform = _logmel(cfg, sample_rate)
        return Encoder(name, modality, "none", cfg, transform)
    if name == "egemaps":
        import opensmile

        from .egemaps import egemaps_features

        return Encoder(name, modality, f"opensmile-{opensmile.__version__}:eGeMAPSv02", cfg,
                       lambda window: egemaps_features(window, sample_rate))
    if name == "wave":
        return Encoder(name, modality, "none", cfg, lambda window: np.asarray(window, dtype=np.float32))
    if name == "whisper":
        from .whisper import SIZES, encode, load_whisper, weights_name
        from ..io import choice

        _require(cfg, ("model", "pool"), name)
        choice(cfg["model"], SIZES, "features.audio.whisper.model")
        model = load_whisper(cfg["model"], device)
        return Encoder(name, modality, weights_name(cfg["model"]), cfg,
                       lambda window: encode(model, window[None], cfg["pool"])[0])
    if name == "whisper_layers":
        from .whisper_layers import check_settings, encode_layers, load_whisper_layers, weights_name as layers_weights

        _require(cfg, ("model", "layers", "output", "pool"), name)
        model = load_whisper_layers(str(cfg["model"]), device)
        layers, output, pool = check_settings(cfg, model.dims.n_layers)
        return Encoder(name, modality, layers_weights(str(cfg["model"])), cfg,
                       lambda window: encode_layers(model, window[None], layers, output, pool)[0])
    from .ssl import encode, load_ssl

    _require(cfg, ("weights", "layer", "pool"), name)
    model, used = load_ssl(name, cfg["weights"])
    return Encoder(name, modality, used, cfg, lambda window: encode(model, window[None], cfg["layer"], cfg["pool"])[0])
