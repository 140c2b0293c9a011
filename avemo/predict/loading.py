"""Finding and loading a model: the shipped release (the default), the models directory of the project, a
model name or a path, the preprocessing it was trained with (checked against its input shapes) -> a
Predictor with its `model_info`. Files are read as data only (avemo.modelfile) and only the model asked
for is opened: error messages list names, never load files to suggest one."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import StageError
from ..modelfile import BUNDLE_JSON, is_bundle, load_checkpoint_file
from ..models import model_inputs
from ..protocols import SINGLE_CLIP, SPEAKER_ADAPTED
from ..training import as_tensors, predict_proba
from ..training.checkpoint import model_from_checkpoint
from .predictor import Predictor

RELEASE = "release"  # the default model's name: the model directory shipped inside the package
RELEASE_DIR = Path(__file__).resolve().parents[1] / "release_model"
MIN_ACTORS, MIN_CLIPS = 12, 500  # a model trained on less is flagged in every output

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
    """Model names by their file names only (nothing is opened): networks (*.pt) and baselines (model
    directories under baselines/), besides the shipped release."""
    directory = models_dir_or_default(models_dir)
    return sorted(p.stem for p in directory.glob("*.pt")) + sorted(
        p.parent.name for p in directory.glob(f"baselines/*/{BUNDLE_JSON}"))


def _available_text(models_dir: Path) -> str:
    names = available_models(models_dir)
    return (", ".join(names) if names else "none (train one with `dvc repro`)") + f"; or the default, '{RELEASE}'"


def shipped_release() -> Path:
    if not is_bundle(RELEASE_DIR):
        raise StageError(f"{RELEASE_DIR}: the shipped release model is missing from this installation "
                         "(reinstall avemo, or give --model)")
    return RELEASE_DIR


def resolve_model(model: str | Path, models_dir: str | Path | None = None) -> Path:
    """The shipped release for 'release'; models/<name>.pt (a network) or models/baselines/<name>/ (a
    baseline's model directory) for a bare name; else the path itself (a .pt file or a model directory)."""
    models_dir, text = models_dir_or_default(models_dir), str(model)
    if text == RELEASE:
        return shipped_release()
    if text.startswith("baseline_") and is_bundle(models_dir / "baselines" / text):
        return models_dir / "baselines" / text
    if text.endswith(".pt") or os.sep in text or "/" in text or Path(text).is_dir():
        path = Path(text)
        if not (path.is_file() or is_bundle(path)):
            what = "model directory (model.json + model.npz)" if path.is_dir() else "checkpoint"
            raise StageError(f"{path}: {what} not found; models in {models_dir}: {_available_text(models_dir)}")
        return path
    path = models_dir / f"{text}.pt"
    if not path.is_file():
        raise StageError(f"model '{text}' not found ({path} does not exist); available models in {models_dir}: "
                         f"{_available_text(models_dir)}")
    return path


OLDER_FORMAT = "written by an older avemo (before the encode stages and the protocols); retrain it with `dvc repro`"


def read_checkpoint(path: Path):
    """The checkpoint (plain data, avemo.modelfile: a pickle of anything else is refused unrun) and its
    model, with one clear error for a file that is not a checkpoint of `train`, and another for one of the
    format before the encode stages."""
    saved = load_checkpoint_file(path)
    if "model" in saved and "normalization" not in saved:
        raise StageError(f"{path}: {OLDER_FORMAT}")
    try:
        return model_from_checkpoint(saved, "cpu")
    except Exception as err:  # noqa: BLE001 - a foreign dict fails in many unrelated ways
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
    """'release' (the shipped model), a model name in `models_dir` (default: default_models_dir()), or a
    network checkpoint (.pt) or model directory path -> a Predictor."""
    path = resolve_model(model, models_dir)
    if path.is_dir():
        return bundle_predictor(path)
    net, norm, checkpoint = read_checkpoint(path)
    cfg = checkpoint["config"]
    prep = preprocessing_of(checkpoint, path)
    check_shapes(path, checkpoint["shapes"], checkpoint["feature_info"])
    needs = tuple(model_inputs(cfg["architecture"], cfg.get("args", {})))

    def classify(inputs: dict, protocol: str, branch: str | None = None):
        return predict_proba(net, as_tensors(inputs), torch.device("cpu"))

    name = str(cfg.get("model", path.stem))
    return Predictor(name, path, classify, norm, checkpoint, prep, "checkpoint", needs,
                     info=model_info(name, str(path), checkpoint_training(checkpoint)))


def bundle_predictor(path: Path) -> Predictor:
    """A model directory (a classical baseline's, or the release): pooled encoder features, its
    classifiers as arrays, the fusion weights of each protocol, and for the release one branch per input
    combination with its calibration."""
    from ..baselines.bundle import bundle_classifier, load_baseline, normalizer_of

    bundle = load_baseline(path)
    info = bundle["feature_info"]
    classify, pool = bundle_classifier(bundle)
    checkpoint = {"feature_info": info, "normalization": bundle["normalization"], "classes": bundle.get("classes")}
    name = bundle.get("name", path.name)
    branches = {b: tuple(spec["inputs"]) for b, spec in (bundle.get("branches") or {}).items()}
    source = "shipped release" if path.resolve() == RELEASE_DIR.resolve() else str(path)
    card = bundle.get("card") or {}
    training = {"actors": len(bundle.get("train_actors") or []) or None, "clips": bundle.get("n_train_clips"),
                "data": card.get("data")}
    return Predictor(name, path, classify, normalizer_of(bundle), checkpoint, preprocessing_of(checkpoint, path),
                     "bundle", tuple(info), pool, branches=branches,
                     info=model_info(name, source, training, card.get("accuracy")))


def checkpoint_training(checkpoint: dict) -> dict:
    """What a network checkpoint records of its training data (actors, clips), when it does."""
    recorded = checkpoint.get("training_data") or {}
    return {"actors": len(recorded.get("actors") or []) or None, "clips": recorded.get("clips"), "data": None}


def model_info(name: str, source: str, training: dict, accuracy: dict | None = None) -> dict:
    """The output's `model_info`: which model answered, on what data it was trained, its cross-validated
    accuracy, and a warning when it was trained on too few actors or clips to be trusted."""
    actors, clips = training.get("actors"), training.get("clips")
    data = training.get("data") or ", ".join(p for p in (f"{actors} actors" if actors else "",
                                                          f"{clips} clips" if clips else "") if p) or "not recorded"
    return {"name": name, "source": source, "data": data,
            "accuracy": accuracy or {SINGLE_CLIP: None, SPEAKER_ADAPTED: None, "folds": None},
            "warning": small_data_warning(actors, clips)}


def small_data_warning(actors: int | None, clips: int | None) -> str | None:
    if actors is None and clips is None:
        return "its training data is not recorded: it may be a smoke-test model (the default, 'release', is not)"
    small = []
    if actors is not None and actors < MIN_ACTORS:
        small.append(f"{actors} actors")
    if clips is not None and clips < MIN_CLIPS:
        small.append(f"{clips} clips")
    if not small:
        return None
    return (f"trained on only {' and '.join(small)} (fewer than {MIN_ACTORS} actors or {MIN_CLIPS} clips, "
            "e.g. the embedded sample's smoke test): its answers are not reliable; the default, 'release', is")
