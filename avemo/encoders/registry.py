"""Every input encoder, found in the modules of this package: a module that defines `ENCODERS`, a tuple of
`EncoderSpec`, declares its encoders there (name, modality, parameter keys, code files, loader, documented
shape, offline hint), and nothing else lists them. Adding an encoder is its module and its settings in
params.yaml (features.video.NAME or features.audio.NAME); docs/encoders.md says the rest.

An encoder reads either the face crops of a clip (`video`, per crop) or its audio window (`audio`:
audio.offset_s .. + audio.duration_s, or several windows: avemo/preprocess.py). `load_encoder(name, settings)` gives the loaded `Encoder`."""
from __future__ import annotations

import importlib
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from ..errors import ParamError
from .spec import Encoder, EncoderSpec, LoadContext

__all__ = ["Encoder", "EncoderSpec", "LoadContext", "code_files", "encoder_modules", "load_encoder", "modality_of",
           "names", "spec_of", "specs"]
HERE = Path(__file__).resolve().parent
DECLARES = re.compile(r"^ENCODERS\s*[:=]", re.MULTILINE)  # how the registry tells an encoder module


def encoder_modules() -> list[Path]:
    """The modules of this package that declare encoders (`ENCODERS = (...)` at module level)."""
    return sorted(p for p in HERE.glob("*.py") if DECLARES.search(p.read_text()))


@lru_cache(maxsize=1)
def specs() -> dict[str, EncoderSpec]:
    """Every encoder by name, in module order."""
    found: dict[str, EncoderSpec] = {}
    for path in encoder_modules():
        module = importlib.import_module(f"{__package__}.{path.stem}")
        for spec in module.ENCODERS:
            if spec.name in found:
                raise ParamError(f"encoder '{spec.name}' declared twice: {found[spec.name].module} and {path.name}")
            found[spec.name] = replace(spec, module=path.name)
    return found


def names() -> tuple[str, ...]:
    return tuple(specs())


def spec_of(name: str) -> EncoderSpec:
    if name not in specs():
        raise ParamError(f"encoder '{name}' unknown; choose one of: {', '.join(specs())}")
    return specs()[name]


def modality_of(name: str) -> str:
    return spec_of(name).modality


def code_files(name: str) -> list[Path]:
    """The source files whose change must invalidate an encoder's cached per-clip outputs."""
    spec = spec_of(name)
    return [HERE / "registry.py", HERE.parent / "audio.py", HERE / spec.module, *(HERE / f for f in spec.code)]


def load_encoder(name: str, cfg: dict, sample_rate: int = 16000, logmel_cfg: dict | None = None,
                 device: str = "cpu") -> Encoder:
    """The encoder `name` with its settings `cfg`; `logmel_cfg` is the log-mel's, which `spectrogram` reads."""
    spec = spec_of(name)
    cfg = dict(cfg or {})
    missing = [k for k in spec.keys if k not in cfg]
    if missing:
        raise ParamError(f"{spec.param}: missing {', '.join(missing)}")
    return spec.load(cfg, LoadContext(sample_rate, logmel_cfg, device))
