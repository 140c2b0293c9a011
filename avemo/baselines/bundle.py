"""A fitted baseline (or the release, which is one with branches) as a model directory: model.json +
model.npz (avemo.modelfile), never a pickle. `bundle` below is the in-memory form: name, feature_info,
normalization state, `pipelines` [(input names, estimator)], fusion_weights {protocol: weights}, and
whatever else JSON holds (best_params, train_actors, branches, card...)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import StageError
from .calibration import fuse_calibrated
from .features import matrix, pooled
from .fit import class_probabilities
from ..modelfile import ArrayClassifier, export_estimator, load_bundle, save_bundle
from ..normalize import ProtocolNormalizer

FORMAT = "avemo-bundle-1"


def _arrays_of_normalization(state: dict) -> tuple[dict, dict]:
    meta = {k: v for k, v in state.items() if k != "prior"}
    arrays = {f"norm.{name}.{stat}": np.asarray(values) for name, s in state["prior"].items()
              for stat, values in s.items()}
    meta["inputs"] = list(state["prior"])
    return meta, arrays


def save_baseline(path: str | Path, bundle: dict) -> None:
    """Write `bundle` as a model directory: JSON for the configuration, npz for every array."""
    norm_meta, arrays = _arrays_of_normalization(bundle["normalization"])
    pipelines = []
    for i, (names, estimator) in enumerate(bundle["pipelines"]):
        kind, parts = export_estimator(estimator)
        pipelines.append({"inputs": list(names), "kind": kind, "arrays": f"p{i}"})
        arrays.update({f"p{i}.{k}": v for k, v in parts.items()})
    meta = {key: value for key, value in bundle.items() if key not in ("pipelines", "normalization")}
    meta.update(format=FORMAT, normalization=norm_meta, pipelines=pipelines,
                fusion_weights={p: to_json(w) for p, w in bundle.get("fusion_weights", {}).items()})
    save_bundle(path, to_json(meta), arrays)


def to_json(value):
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_baseline(path: str | Path) -> dict:
    """The bundle dict of a model directory, estimators as ArrayClassifier; nothing in it is executed."""
    meta, arrays = load_bundle(path)
    if meta.get("format") != FORMAT:
        raise StageError(f"{path}: model.json is not an avemo model ({FORMAT}); retrain it with `dvc repro`")
    try:
        norm = meta["normalization"]
        prior = {name: {stat: arrays[f"norm.{name}.{stat}"] for stat in ("mean", "var")} for name in norm["inputs"]}
        pipelines = [(p["inputs"], ArrayClassifier(p["kind"], {k.removeprefix(p["arrays"] + "."): v
                                                               for k, v in arrays.items()
                                                               if k.startswith(p["arrays"] + ".")}))
                     for p in meta["pipelines"]]
    except KeyError as err:
        raise StageError(f"{path}: model directory incomplete (no {err})") from None
    state = {k: v for k, v in norm.items() if k != "inputs"}
    return {**meta, "pipelines": pipelines, "normalization": {**state, "prior": prior},
            "fusion_weights": meta.get("fusion_weights", {})}


def normalizer_of(bundle: dict) -> ProtocolNormalizer:
    return ProtocolNormalizer.from_state_dict(bundle["normalization"])


def fuse(probs: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    fused = sum(w * np.log(p + 1e-9) for w, p in zip(weights, probs))
    fused = np.exp(fused - fused.max(axis=1, keepdims=True))
    return fused / fused.sum(axis=1, keepdims=True)


def bundle_classifier(bundle: dict):
    """(classify(standardised pooled inputs, protocol, branch) -> probabilities, pool(encoder outputs) ->
    pooled) of a saved baseline or release, for `predict`: the same functions the stage scored the test
    actors with. A release names its branches (the input combinations it answers from), each with its own
    fusion weights and temperature per protocol; a plain baseline has one branch, all of its inputs."""
    scorers = {tuple(names): scorer for names, scorer in bundle["pipelines"]}
    branches = bundle.get("branches") or {}

    def classify(inputs: dict, protocol: str, branch: str | None = None) -> np.ndarray:
        if branch in branches:
            spec = branches[branch]
            probs = [class_probabilities(scorers[(name,)], matrix(inputs, [name])) for name in spec["inputs"]]
            fused = fuse(probs, np.asarray(spec["fusion_weights"][protocol]))
            return calibrate(fused, spec["temperature"][protocol])
        probs = [class_probabilities(scorer, matrix(inputs, names)) for names, scorer in bundle["pipelines"]]
        fusion = bundle["fusion_weights"]
        return fuse_any(probs, fusion[protocol]) if fusion else probs[0]

    return classify, lambda inputs: {name: pooled(name, values) for name, values in inputs.items()}


def fuse_any(probs: list[np.ndarray], fusion) -> np.ndarray:
    """`baselines.fusion` grid (weights) or calibrated ({'temperatures', 'weights'}) late fusion."""
    return fuse_calibrated(probs, fusion) if isinstance(fusion, dict) else fuse(probs, np.asarray(fusion))


def calibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling: softmax(log p / T); T > 1 softens overconfident probabilities."""
    return fuse([probs], np.array([1.0 / float(temperature)]))
