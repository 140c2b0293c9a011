"""Finding and loading a checkpoint: the models directory and params.yaml of the project, a model name or a
checkpoint path, the preprocessing it was trained with (checked against its input shapes) -> a Predictor."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from ..errors import StageError
from ..io import load_params
from ..models import model_inputs
from ..train import load_checkpoint
from .predictor import AUDIO_INPUTS, VIDEO_INPUTS, Predictor

# The repository the package is installed from (an editable install runs avemo/ from the repository root).
INSTALL_ROOT = Path(__file__).resolve().parents[2]


def project_dir() -> Path:
    """The current directory when it is an avemo project (dvc.yaml and models/), else INSTALL_ROOT."""
    here = Path.cwd()
    return here if (here / "dvc.yaml").is_file() and (here / "models").is_dir() else INSTALL_ROOT


def default_models_dir() -> Path:
    """$AVEMO_MODELS if set, else the models/ of project_dir()."""
    return Path(os.environ["AVEMO_MODELS"]) if os.environ.get("AVEMO_MODELS") else project_dir() / "models"


def default_params() -> Path:
    """params.yaml of project_dir(): read only for checkpoints that do not record their preprocessing."""
    return project_dir() / "params.yaml"


def models_dir_or_default(models_dir: str | Path | None) -> Path:
    return default_models_dir() if models_dir is None else Path(models_dir)


def available_models(models_dir: str | Path | None = None) -> list[str]:
    return sorted(p.stem for p in models_dir_or_default(models_dir).glob("*.pt"))


def _available_text(models_dir: Path) -> str:
    names = available_models(models_dir)
    return ", ".join(names) if names else "none (train one with `dvc repro`)"


def resolve_model(model: str | Path, models_dir: str | Path | None = None) -> Path:
    """models/<name>.pt for a bare name, else the checkpoint path itself; a clear error if missing."""
    models_dir, text = models_dir_or_default(models_dir), str(model)
    if text.endswith(".pt") or os.sep in text or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise StageError(f"{path}: checkpoint not found; models in {models_dir}: {_available_text(models_dir)}")
        return path
    path = models_dir / f"{text}.pt"
    if not path.is_file():
        raise StageError(f"model '{text}' not found ({path} does not exist); available models in {models_dir}: "
                         f"{_available_text(models_dir)}")
    return path


def read_checkpoint(path: Path):
    """load_checkpoint with one clear error for any file that is not a checkpoint written by `train`."""
    try:
        return load_checkpoint(path, "cpu")
    except Exception as err:  # torch.load/pickle/state_dict raise many unrelated types for a bad file
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise StageError(f"{path}: not a readable model checkpoint ({type(err).__name__}: {detail})") from None


def preprocessing_of(checkpoint: dict, params_path: str | Path | None = None) -> tuple[dict, str]:
    """The faces/audio/features settings the checkpoint's features were made with, and where they came from."""
    info = checkpoint.get("feature_info") or {}
    if "preprocessing" in info:
        prep = info["preprocessing"]
        return {k: dict(prep[k]) for k in ("faces", "audio", "features")}, "checkpoint"
    params_path = default_params() if params_path is None else params_path
    params = load_params(path=params_path)
    missing = [k for k in ("faces", "audio", "features") if k not in params]
    if missing:
        raise StageError(f"{params_path}: sections {missing} missing (needed: the checkpoint predates "
                         "feature_info.preprocessing)")
    prep = {k: dict(params[k]) for k in ("faces", "audio", "features")}
    if ":" in str(info.get("weights", "")):  # the backbone actually used beats today's params.yaml
        backbone, weights = info["weights"].split(":", 1)
        prep["features"] = {"backbone": backbone, "weights": "none" if weights == "random-init" else weights}
    return prep, str(params_path)


def expected_shapes(prep: dict) -> dict[str, tuple]:
    """Leading input shapes the preprocessing gives (embedding sizes depend on the backbone: not checked here)."""
    f, a = prep["faces"], prep["audio"]
    length = int(a["duration_s"] * a["sample_rate"])
    return {"video": (f["n_frames"],), "frames": (f["n_frames"], f["size"], f["size"], 3), "wave": (length,),
            "logmel": (a["n_mels"], length // int(a["sample_rate"] * a["hop_ms"] / 1000) + 1)}


def check_shapes(path: Path, shapes: dict, prep: dict, source: str) -> None:
    """Refuse preprocessing that would not give the tensors the model was trained on."""
    problems = []
    for name, expected in expected_shapes(prep).items():
        if name in shapes and tuple(shapes[name][:len(expected)]) != expected:
            problems.append(f"{name} {tuple(shapes[name])} but the preprocessing gives {expected}"
                            + (f" (faces.n_frames={prep['faces']['n_frames']})" if name in VIDEO_INPUTS else ""))
    if problems:
        raise StageError(f"{path}: trained on {'; '.join(problems)} (preprocessing from {source})")


def load_predictor(model: str | Path, models_dir: str | Path | None = None,
                   params_path: str | Path | None = None) -> Predictor:
    """A model name in `models_dir` (default: default_models_dir()) or a checkpoint path -> a Predictor;
    `params_path` (default: default_params()) is read only when the checkpoint predates its preprocessing."""
    path = resolve_model(model, models_dir)
    net, normalizer, checkpoint = read_checkpoint(path)
    cfg = checkpoint["config"]
    prep, source = preprocessing_of(checkpoint, params_path)
    check_shapes(path, checkpoint["shapes"], prep, source)
    needs = tuple(model_inputs(cfg["architecture"], cfg.get("args", {})))
    if checkpoint.get("single_clip_normalizer"):
        print(f"note: {path.name} was trained with speaker normalisation (train.speaker_norm); a single clip is "
              "normalised with the global training statistics instead, which costs accuracy", file=sys.stderr)
    return Predictor(str(cfg.get("model", path.stem)), path, net, normalizer, checkpoint, prep, source, needs)


def models_of_kind(kind: str, models_dir: str | Path | None = None) -> list[str]:
    """Names in models_dir whose inputs are video only / audio only (for suggestions in error messages)."""
    names = []
    for path in sorted(models_dir_or_default(models_dir).glob("*.pt")):
        try:
            cfg = torch.load(path, map_location="cpu", weights_only=False)["config"]
            needs = model_inputs(cfg["architecture"], cfg.get("args", {}))
        except Exception:  # an unreadable neighbour must not hide the real error
            continue
        has_video, has_audio = any(n in needs for n in VIDEO_INPUTS), any(n in needs for n in AUDIO_INPUTS)
        if (kind == "video" and has_video and not has_audio) or (kind == "audio" and has_audio and not has_video):
            names.append(path.stem)
    return names
