"""Feature sets of the classical baselines: one pooled vector per clip and input. Each encoder declares how
(its `pooling`, avemo/encoders/registry.py), e.g.:

- `egemaps`: openSMILE eGeMAPSv02 functionals (88) of the audio window, as they are;
- `imagenet`: the mean over the frames of the ImageNet face embeddings (the former `frame_pooled`);
- `fer`: mean and standard deviation over the frames of the FER2013 expression features (2 x 135);
- `whisper`: mean and standard deviation over time of the Whisper encoder states (2 x 512 for base);
- `whisper_layers`: the same for each stored layer of the encoder (features.audio.whisper_layers.layers),
  side by side (7 x 2 x 512 for base and all layers).
A feature set names one or more of them joined by `_` (e.g. `egemaps_imagenet`): side by side for the
single classifiers, one classifier each for the late-fusion classifier."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ParamError, StageError
from ..io import read_json

if TYPE_CHECKING:
    from ..data import FeatureSet


def pooling(name: str) -> str | None:
    """How the baselines pool encoder `name`'s output (None: it is no baseline input)."""
    from ..encoders.registry import specs

    spec = specs().get(name)
    return spec.pooling if spec else None


def pooled_inputs() -> list[str]:
    from ..encoders.registry import specs

    return [name for name, spec in specs().items() if spec.pooling]


def parse_feature_set(feature_set: str) -> tuple[str, ...]:
    """'whisper_fer' -> ('whisper', 'fer'); an input name may hold '_' itself: the longest known name first."""
    known = sorted(pooled_inputs(), key=len, reverse=True)
    names, rest = [], feature_set
    while rest:
        name = next((n for n in known if rest == n or rest.startswith(n + "_")), rest.split("_")[0])
        names.append(name)
        rest = rest[len(name) + 1:]
    names = tuple(names)
    unknown = [n for n in names if pooling(n) is None]
    if unknown or not names or len(set(names)) != len(names):
        raise ParamError(f"baselines feature set '{feature_set}': give inputs among {', '.join(pooled_inputs())} "
                         "joined by '_', each once (e.g. whisper_fer_imagenet)")
    return names


def pooled(name: str, values: np.ndarray) -> np.ndarray:
    """(n, T, d) per-frame or per-step features -> (n, d) mean or (n, 2d) mean and std, as the encoder's
    `pooling` says; `flatten`: each clip's values as they are, in one vector; `per_layer`: (n, layers, 2d)
    as they are, or (n, layers, T, d) pooled over T, in one vector."""
    values = np.asarray(values, dtype=np.float32)
    if pooling(name) == "per_layer":  # (n, layers, 2d) pooled by the encoder, or (n, layers, T, d) pooled over T
        if values.ndim == 4:
            values = np.concatenate([values.mean(axis=2), values.std(axis=2)], axis=2)
        return values.reshape(len(values), -1)
    if values.ndim == 2 or pooling(name) == "flatten":
        return values.reshape(len(values), -1)
    mean = values.mean(axis=1)
    return mean if pooling(name) == "mean" else np.concatenate([mean, values.std(axis=1)], axis=1)


def _input_arrays(name: str, features: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(clips, pooled values, the encode stage's info.json) of one input."""
    from ..data import input_dir  # data reads metadata with pandas: not imported by `predict`

    path = input_dir(features, name) / "features.npz"
    if not path.is_file():
        raise StageError(f"{path}: missing; run the encode stage of '{name}' first")
    with np.load(path) as arrays:
        clips, values = arrays["clips"], pooled(name, arrays["values"])
    return clips, values, read_json(input_dir(features, name) / "info.json")


def load_pooled_set(feature_set: str, metadata: Path, features: Path) -> tuple[FeatureSet, dict[str, dict]]:
    """The metadata's clips that have every input of `feature_set` (others in `excluded`), and each input's
    info.json (the weights and settings it was computed with)."""
    from ..data import FeatureSet
    from ..metadata import read_metadata

    needs = parse_feature_set(feature_set)
    meta = read_metadata(metadata).set_index("clip_id")
    available = {name: _input_arrays(name, Path(features)) for name in needs}
    index = {name: {str(c): i for i, c in enumerate(clips)} for name, (clips, _, _) in available.items()}
    clips, excluded = [], []
    for clip in meta.index:
        missing = [name for name in needs if clip not in index[name]]
        (excluded.append({"clip": clip, "reason": f"no {', '.join(missing)} features"}) if missing
         else clips.append(clip))
    if not clips:
        raise StageError(f"{metadata}: no clip has all of {', '.join(needs)} features")
    inputs = {name: available[name][1][[index[name][c] for c in clips]] for name in needs}
    rows = meta.loc[clips]
    data = FeatureSet(np.array(clips), rows["label"].to_numpy(), rows["actor"].to_numpy(), inputs, excluded)
    return data, {name: available[name][2] for name in needs}


def matrix(inputs: dict[str, np.ndarray], names=None) -> np.ndarray:
    """Clips x features: the inputs side by side, in the order of the feature set."""
    names = list(inputs) if names is None else names
    return np.concatenate([inputs[n].reshape(len(inputs[n]), -1) for n in names], axis=1)
