"""Speaker-independent splits and the feature arrays each model trains on."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import read_json
from .errors import LeakageError, ParamError
from .metadata import read_metadata

SPLITS = ("train", "val", "test")


def actor_splits(actors, test_actors, val_actors) -> dict[str, list[int]]:
    """Train = every present actor that is neither test nor validation; refuse overlaps and empty parts."""
    present = sorted(set(int(a) for a in actors))
    test, val = set(test_actors), set(val_actors)
    if test & val:
        raise LeakageError(f"split: actors {sorted(test & val)} are in both test_actors and val_actors")
    splits = {"train": [a for a in present if a not in test | val],
              "val": [a for a in present if a in val], "test": [a for a in present if a in test]}
    check_no_leakage(splits)
    for name, members in splits.items():
        if not members:
            raise ParamError(f"split: no {name} actor among the data's actors {present} "
                             f"(test_actors={sorted(test)}, val_actors={sorted(val)})")
    return splits


def check_no_leakage(splits: dict[str, list[int]]) -> None:
    seen: dict[int, str] = {}
    for name, members in splits.items():
        for actor in members:
            if actor in seen:
                raise LeakageError(f"split: actor {actor} is in both {seen[actor]} and {name}")
            seen[actor] = name


@dataclass
class FeatureSet:
    """Arrays aligned on `clips`: inputs by name (an encoder's, avemo/encoders/registry.py, or the face crops,
    'frames'), labels, actors."""
    clips: np.ndarray
    labels: np.ndarray
    actors: np.ndarray
    inputs: dict[str, np.ndarray]
    excluded: list[dict] = field(default_factory=list)

    def subset(self, actors) -> "FeatureSet":
        keep = np.isin(self.actors, list(actors))
        return FeatureSet(self.clips[keep], self.labels[keep], self.actors[keep],
                          {k: v[keep] for k, v in self.inputs.items()})


def input_dir(features: Path, name: str) -> Path:
    """Where the encode stage of input `name` writes: features.npz (clips, values) and info.json."""
    return Path(features) / name


def input_paths(paths) -> dict[str, Path]:
    """Stage outputs given to a stage (data/faces, data/features/NAME...) -> {input name: path}."""
    out = {}
    for path in map(Path, paths):
        if (path / "tracks.json").is_file():
            out["frames"] = path
        elif (path / "info.json").is_file() and (path / "features.npz").is_file():
            out[read_json(path / "info.json")["input"]] = path
        else:
            raise ParamError(f"{path}: neither the faces stage's output (tracks.json) nor an encoder's "
                             "(features.npz, info.json); run the stages before it")
    return out


def _load_input(name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(clip ids, array) of one input: an encoder's output, or the face crops (uint8, frames x H x W x 3)."""
    if name == "frames":
        from .faces.strip import load_strip

        n_frames = read_json(path / "report.json")["config"]["n_frames"]
        clips = sorted(read_json(path / "tracks.json"))
        return np.array(clips), np.stack([load_strip(path / "strips" / f"{c}.jpg", n_frames) for c in clips])
    with np.load(path / "features.npz") as arrays:
        return arrays["clips"], arrays["values"]


def feature_info(paths: dict[str, Path], names) -> dict[str, dict]:
    """What made each input among `names`: an encoder's info.json (weights used, settings, shape, the faces
    stage's settings for video encoders); for the face crops, the faces stage's settings."""
    def info(name):
        if name == "frames":
            return {"input": "frames", "weights": "none", "faces": read_json(Path(paths[name]) / "report.json")["config"]}
        return read_json(Path(paths[name]) / "info.json")
    return {name: info(name) for name in names}


def load_feature_set(paths: dict[str, Path], metadata: Path, needs: tuple[str, ...]) -> FeatureSet:
    """Clips that have every input in `needs` (read from `paths`, input name -> stage output); the others
    are listed in `excluded` with the reason."""
    meta = read_metadata(metadata).set_index("clip_id")
    absent = [n for n in needs if n not in paths]
    if absent:
        raise ParamError(f"the model reads {', '.join(absent)} but its stage was given only "
                         f"{', '.join(map(str, paths.values()))}: run.yaml is stale, run `avemo profile`")
    available = {name: _load_input(name, Path(paths[name])) for name in needs}
    index = {name: {c: i for i, c in enumerate(available[name][0])} for name in needs}
    clips, excluded = [], []
    for clip in meta.index:
        missing = [name for name in needs if clip not in index[name]]
        (excluded.append({"clip": clip, "reason": f"no {', '.join(missing)} features"}) if missing
         else clips.append(clip))
    inputs = {name: available[name][1][[index[name][c] for c in clips]] for name in needs}
    inputs = {name: v if v.dtype == np.uint8 else v.astype(np.float32) for name, v in inputs.items()}
    rows = meta.loc[clips]
    return FeatureSet(np.array(clips), rows["label"].to_numpy(), rows["actor"].to_numpy(), inputs, excluded)


GENDERS = ("all", "male", "female")


def select_gender(data: FeatureSet, gender: str) -> FeatureSet:
    """Only the clips of male (odd) or female (even) actors, for gender-specific models."""
    from .io import choice

    choice(gender, GENDERS, "train.gender")
    if gender == "all":
        return data
    return data.subset([a for a in np.unique(data.actors) if (a % 2 == 1) == (gender == "male")])


def check_one_copy_per_take(clips) -> None:
    """Refuse data holding two copies of one take, e.g. the audio-only wav (03-...) and the audio+video
    file (01-...) of the same recording: its soundtrack is that same wav, so one copy would train and
    the other test on the very recording (or weight it twice)."""
    from .ids import MODALITIES, parse_clip_id

    takes: dict[str, str] = {}
    for clip in clips:
        stem = parse_clip_id(str(clip)).stem
        take = stem[3:]  # every field but the modality
        if take in takes:
            first = takes[take]
            kinds = " and ".join(MODALITIES[int(c[:2])] for c in (first, stem))
            raise LeakageError(f"split: clips {first} and {stem} are two copies ({kinds}) of one take; "
                               "keep one modality per take (the audio+video files)")
        takes[take] = stem


def split_feature_set(data: FeatureSet, split_cfg: dict) -> dict[str, FeatureSet]:
    """Train / val / test by actor, after the leakage guards (no shared actor, one copy per take)."""
    check_one_copy_per_take(data.clips)
    splits = actor_splits(data.actors, split_cfg["test_actors"], split_cfg["val_actors"])
    return {name: data.subset(members) for name, members in splits.items()}


