"""Finding and loading a checkpoint: the models directory and params.yaml of the project, a model name or a
checkpoint path, the preprocessing it was trained with (checked against its input shapes) -> a Predictor."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import StageError
from ..models import model_inputs
from ..normalize import ProtocolNormalizer
from ..training import as_tensors, load_checkpoint, predict_proba
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


def models_dir_or_default(models_dir: str | Path | None) -> Path:
    return default_models_dir() if models_dir is None else Path(models_dir)


def available_models(models_dir: str | Path | None = None) -> list[str]:
    directory = models_dir_or_default(models_dir)
    return sorted(p.stem for p in [*directory.glob("*.pt"), *directory.glob("baselines/*.joblib")])


def _available_text(models_dir: Path) -> str:
    names = available_models(models_dir)
    return ", ".join(names) if names else "none (train one with `dvc repro`)"


def resolve_model(model: str | Path, models_dir: str | Path | None = None) -> Path:
    """models/<name>.pt (a network) or models/baselines/<name>.joblib (a baseline) for a bare name, else the
    path itself; a clear error if missing."""
    models_dir, text = models_dir_or_default(models_dir), str(model)
    if text.startswith("baseline_") and (models_dir / "baselines" / f"{text}.joblib").is_file():
        return models_dir / "baselines" / f"{text}.joblib"
    if text.endswith((".pt", ".joblib")) or os.sep in text or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise StageError(f"{path}: checkpoint not found; models in {models_dir}: {_available_text(models_dir)}")
        return path
    path = models_dir / f"{text}.pt"
    if not path.is_file():
        raise StageError(f"model '{text}' not found ({path} does not exist); available models in {models_dir}: "
                         f"{_available_text(models_dir)}")
    return path


OLDER_FORMAT = "written by an older avemo (before the encode stages and the protocols); retrain it with `dvc repro`"


def read_checkpoint(path: Path):
    """load_checkpoint with one clear error for any file that is not a checkpoint written by `train`, and
    another for a checkpoint of the format before the encode stages."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(saved, dict) and "model" in saved and "normalization" not in saved:
            raise StageError(f"{path}: {OLDER_FORMAT}")
        return load_checkpoint(path, "cpu")
    except StageError:
        raise
    except Exception as err:  # torch.load/pickle/state_dict raise many unrelated types for a bad file
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise StageError(f"{path}: not a readable model checkpoint ({type(err).__name__}: {detail})") from None


def preprocessing_of(checkpoint: dict, path: Path) -> dict:
    """The settings the checkpoint's inputs were made with (recorded by the encode stages): faces (crop
    settings), audio (the window), encoders (each encoder's settings)."""
    info = checkpoint.get("feature_info") or {}
    if "normalization" not in checkpoint or any("input" not in i for i in info.values()):
        raise StageError(f"{path}: {OLDER_FORMAT}")
    faces = next((i["faces"] for i in info.values() if i.get("faces")), None)
    audio = next((i["window"] for i in info.values() if i.get("window")), None)
    encoders = {name: renamed(i["config"], name) for name, i in info.items() if name != "frames"}
    return {"faces": faces and renamed(faces, "faces"), "audio": audio, "encoders": encoders}


# params.yaml keys once named `size` (DVC's run cache ignores keys of that name): checkpoints written before
# the rename still load.
RENAMED_KEYS = {"faces": {"size": "crop_px"}, "whisper": {"size": "model"}}


def renamed(cfg: dict, section: str) -> dict:
    """A recorded configuration with its keys under their current names."""
    names = RENAMED_KEYS.get(section, {})
    return {names.get(key, key): value for key, value in cfg.items()}


def check_shapes(path: Path, shapes: dict, info: dict) -> None:
    """Refuse a checkpoint whose recorded inputs would not give the tensors the model was trained on."""
    problems = [f"{name} {tuple(shapes[name])} but its encoder gives {tuple(i['shape'])}"
                for name, i in info.items() if "shape" in i and name in shapes
                and tuple(shapes[name]) != tuple(i["shape"])]
    if problems:
        raise StageError(f"{path}: trained on {'; '.join(problems)}")


def load_predictor(model: str | Path, models_dir: str | Path | None = None) -> Predictor:
    """A model name in `models_dir` (default: default_models_dir()), or a network checkpoint (.pt) or
    baseline bundle (.joblib) path -> a Predictor."""
    path = resolve_model(model, models_dir)
    if path.suffix == ".joblib":
        return baseline_predictor(path)
    net, norm, checkpoint = read_checkpoint(path)
    cfg = checkpoint["config"]
    prep = preprocessing_of(checkpoint, path)
    check_shapes(path, checkpoint["shapes"], checkpoint["feature_info"])
    needs = tuple(model_inputs(cfg["architecture"], cfg.get("args", {})))

    def classify(inputs: dict, protocol: str):
        return predict_proba(net, as_tensors(inputs), torch.device("cpu"))

    return Predictor(str(cfg.get("model", path.stem)), path, classify, norm, checkpoint, prep, "checkpoint", needs)


def baseline_predictor(path: Path) -> Predictor:
    """A classical baseline's bundle (models/baselines/NAME.joblib): pooled encoder features, its scikit-learn
    pipeline(s), and for the late-fusion classifier the fusion weights of each protocol."""
    from ..baselines.stage import bundle_classifier

    try:
        import joblib

        bundle = joblib.load(path)
        norm = ProtocolNormalizer.from_state_dict(bundle["normalization"])
        info = bundle["feature_info"]
    except Exception as err:  # noqa: BLE001 - pickle and joblib raise many unrelated types for a bad file
        raise StageError(f"{path}: not a readable baseline bundle ({type(err).__name__}); retrain it with `dvc repro`") from None
    classify, pool = bundle_classifier(bundle)
    checkpoint = {"feature_info": info, "normalization": bundle["normalization"], "classes": bundle.get("classes")}
    name = bundle.get("name", path.stem)
    return Predictor(name, path, classify, norm, checkpoint, preprocessing_of(checkpoint, path), "bundle",
                     tuple(info), pool)


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
