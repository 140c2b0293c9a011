"""Feature sets of the classical baselines: one pooled vector per clip and input.

- `egemaps`: openSMILE eGeMAPSv02 functionals (88) of the audio window;
- `imagenet`: the mean over the frames of the ImageNet face embeddings (the former `frame_pooled`);
- `fer`: mean and standard deviation over the frames of the FER2013 expression features (2 x 135);
- `whisper`: mean and standard deviation over time of the Whisper encoder states (2 x 512 for base);
- `whisper_layers`: the same for each stored layer of the encoder (features.audio.whisper_layers.layers),
  side by side (7 x 2 x 512 for base and all layers).
A feature set names one or more of them joined by `_` (e.g. `egemaps_imagenet`): side by side for the
single classifiers, one classifier each for the late-fusion classifier."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import FeatureSet, input_dir
from ..errors import ParamError, StageError
from ..io import read_json

POOLED_INPUTS = ("egemaps", "imagenet", "fer", "whisper_layers", "whisper")  # longest names first: see below
LAYERED = ("whisper_layers",)  # (layers, 2d) pooled by the encoder, or (layers, T, d) sequences
MEAN_ONLY = ("imagenet",)  # 1280-d already; its standard deviation over frames adds noise, not emotion


def parse_feature_set(feature_set: str) -> tuple[str, ...]:
    names, rest = [], feature_set
    while rest:  # input names may hold '_' themselves (whisper_layers): the longest known name first
        name = next((n for n in POOLED_INPUTS if rest == n or rest.startswith(n + "_")), rest.split("_")[0])
        names.append(name)
        rest = rest[len(name) + 1:]
    names = tuple(names)
    unknown = [n for n in names if n not in POOLED_INPUTS]
    if unknown or len(set(names)) != len(names) or not names:
        raise ParamError(f"baselines feature set '{feature_set}': give inputs among {', '.join(POOLED_INPUTS)} "
                         "joined by '_', each once (e.g. whisper_fer_imagenet)")
    return names


def pooled(name: str, values: np.ndarray) -> np.ndarray:
    """(n, T, d) per-frame or per-step features -> (n, d) mean (imagenet) or (n, 2d) mean and std."""
    values = np.asarray(values, dtype=np.float32)
    if name in LAYERED:  # (n, layers, 2d) as stored, or (n, layers, T, d) sequences pooled over T
        if values.ndim == 4:
            values = np.concatenate([values.mean(axis=2), values.std(axis=2)], axis=2)
        return values.reshape(len(values), -1)
    if values.ndim == 2:
        return values
    mean = values.mean(axis=1)
    return mean if name in MEAN_ONLY else np.concatenate([mean, values.std(axis=1)], axis=1)


def _input_arrays(name: str, features: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(clips, pooled values, the encode stage's info.json) of one input."""
    path = input_dir(features, name) / "features.npz"
    if not path.is_file():
        raise StageError(f"{path}: missing; run the encode stage of '{name}' first")
    with np.load(path) as arrays:
        clips, values = arrays["clips"], pooled(name, arrays["values"])
    return clips, values, read_json(input_dir(features, name) / "info.json")


def load_pooled_set(feature_set: str, metadata: Path, features: Path) -> tuple[FeatureSet, dict[str, dict]]:
    """The metadata's clips that have every input of `feature_set` (others in `excluded`), and each input's
    info.json (the weights and settings it was computed with)."""
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
