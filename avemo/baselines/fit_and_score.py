"""Stage baselines@FEATURES-CLASSIFIER: a classical classifier on pooled features, scored under both
protocols like every model (avemo.evaluate), its fitted pipeline kept as a model directory of arrays
(avemo.baselines.bundle: model.json + model.npz, no pickle).

The inputs are standardised as the neural models' are (avemo.normalize, `train_defaults.normalization`:
in `enrolment` mode the training clips appear `ENROLMENT_DRAWS` times, each time standardised with
statistics of a random number of their actor's other clips). The grid search is cross-validated by actor
over the training actors only; the model is refitted on them and scored on the test actors. The late-fusion
classifier `late_logreg` fits one logistic regression per input and sums their log-probabilities with
weights chosen on the validation actors, separately for each protocol: `baselines.fusion: grid` (whole-number
weights maximising validation accuracy) or `calibrated` (a temperature per classifier, then non-negative
weights maximising the validation log-likelihood; avemo.baselines.calibration)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from ..data import split_feature_set
from ..errors import ParamError, StageError
from ..metrics import protocol_probabilities, protocol_report
from ..io import write_json
from ..modality import modality
from ..normalize import ProtocolNormalizer
from .bundle import fuse, save_baseline
from .calibration import fit_calibrated
from .features import load_pooled_set, matrix, parse_feature_set
from .fit import CLASSIFIERS, class_probabilities, full_width, grid_search, probability_model
from ..protocols import PROTOCOLS, SINGLE_CLIP

ENROLMENT_DRAWS = 3
FUSION_STEPS = 5  # late-fusion weights: whole numbers 0..5 per input, normalised
FUSIONS = ("grid", "calibrated")


def baseline_parts(spec: str) -> tuple[str, str]:
    """'whisper_fer-late_logreg' -> ('whisper_fer', 'late_logreg')."""
    feature_set, _, classifier = spec.partition("-")
    parse_feature_set(feature_set)
    if classifier not in CLASSIFIERS:
        raise ParamError(f"profile baseline '{spec}': give FEATURES-CLASSIFIER, classifier one of {', '.join(CLASSIFIERS)}")
    return feature_set, classifier


def baseline_name(spec: str) -> str:
    """The name of a baseline's metrics and predictions files: baseline_<features>_<classifier>."""
    feature_set, classifier = baseline_parts(spec)
    return f"baseline_{feature_set}_{classifier}"


def training_matrix(norm: ProtocolNormalizer, train, mode: str, seed: int, names) -> tuple[np.ndarray, ...]:
    """(features, labels, actors) of the training clips as the classifier is fitted on them."""
    rng = np.random.default_rng(seed)
    draws = ENROLMENT_DRAWS if mode == "enrolment" else 1
    views = [norm.training_view(train.inputs, train.actors, mode, rng) for _ in range(draws)]
    return (np.concatenate([matrix(v, names) for v in views]), np.tile(train.labels, draws),
            np.tile(train.actors, draws))


def layer_sets(cfg: dict, names: list[str], infos: dict, classifier: str = "logreg") -> dict | None:
    """The candidate layer sets of `baselines.layer_sets` as positions among the layers the whisper_layers
    encode stage stored, for a logistic regression of that input alone; None otherwise (every stored layer)."""
    sets = cfg.get("layer_sets")
    if names != ["whisper_layers"] or not sets or classifier not in ("logreg", "late_logreg"):
        return None
    info = infos["whisper_layers"]
    stored = info["config"].get("layers", "all")
    stored = list(range(info["shape"][0])) if stored == "all" else list(stored)
    if not isinstance(sets, list) or not all(isinstance(s, list) and s for s in sets):
        raise ParamError(f"baselines.layer_sets: {sets!r}; give a list of layer lists, e.g. [[3], [2, 3, 4]]")
    usable = [tuple(stored.index(k) for k in s) for s in sets if all(k in stored for k in s)]
    if not usable:
        raise ParamError(f"baselines.layer_sets: none of {sets} is among the stored layers {stored} "
                         "(features.audio.whisper_layers.layers)")
    return {"n_layers": len(stored), "keep": usable, "stored": stored}


def fit_one(cfg: dict, classifier: str, features, labels, actors, seed: int, layers: dict | None = None):
    threads = int(cfg.get("threads", 1))
    if classifier not in cfg.get("grids", {}):
        raise ParamError(f"baselines.grids.{classifier}: missing; give the parameter grid of {classifier}")
    search = grid_search(features, labels, actors, classifier, cfg["grids"][classifier], cfg["cv_folds"],
                         cfg["scoring"], seed, threads, layers)
    scorer, how = probability_model(search, features, labels, actors, threads)
    if layers:
        scorer = full_width(scorer)
    return search, scorer, how


def best_weights(val_probs: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Late-fusion weights maximising validation accuracy (then log-likelihood) over a coarse simplex grid."""
    logs = [np.log(p + 1e-9) for p in val_probs]

    def score(weights):
        fused = sum(w * lp for w, lp in zip(weights, logs))
        fused = fused - np.logaddexp.reduce(fused, axis=1, keepdims=True)
        return (float((fused.argmax(1) == labels).mean()), float(fused[np.arange(len(labels)), labels].mean()))

    grid = [np.array(w, dtype=float) for w in itertools.product(range(FUSION_STEPS + 1), repeat=len(logs)) if sum(w)]
    best = max(grid, key=score)
    return best / best.sum()


def readable_params(best: dict, layers: dict | None) -> dict:
    """GridSearchCV's best_params_ as the metrics file shows them: C, and the layers kept by number."""
    out = {k.removeprefix("clf__"): v for k, v in best.items() if k != "layers__keep"}
    if "layers__keep" in best:
        out["layers"] = [layers["stored"][i] for i in best["layers__keep"]]
    return out


def fit_fusion(method: str, val_probs: list[np.ndarray], labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """(weights for `fuse`, what the metrics file shows) of `method` (baselines.fusion), fitted on the
    validation clips. Calibrated: fusing softmax(log p_i / T_i) with weights w_i is fusing the raw log p_i with
    w_i / T_i (each branch's normaliser is the same for every class), so both methods give weights for `fuse`."""
    from ..io import choice

    choice(method, FUSIONS, "baselines.fusion")
    if method == "grid":
        return best_weights(val_probs, labels), {}
    fitted = fit_calibrated(val_probs, labels)
    return np.asarray(fitted["effective"]), {"temperatures": fitted["temperatures"], "weights": fitted["weights"]}


def run_baseline(cfg: dict, split_cfg: dict, train_cfg: dict, feature_set: str, classifier: str, metadata: Path,
                 metrics: Path, model_path: Path, features: Path, predictions: Path | None = None) -> dict:
    if classifier not in CLASSIFIERS:
        raise ParamError(f"baselines classifier '{classifier}': choose one of: {', '.join(CLASSIFIERS)}")
    data, infos = load_pooled_set(feature_set, metadata, features)
    weights_used = {n: i["weights"] for n, i in infos.items()}
    parts = split_feature_set(data, split_cfg)
    train, val, test = parts["train"], parts["val"], parts["test"]
    seed, mode = int(train_cfg.get("seed", 0)), train_cfg.get("normalization", "enrolment")
    norm = ProtocolNormalizer.fit(train.inputs, train_cfg.get("prior_clips", 2.0))
    groups = [[name] for name in data.inputs] if classifier == "late_logreg" else [list(data.inputs)]
    fitted = []
    for names in groups:
        x, y, actors = training_matrix(norm, train, mode, seed, names)
        fitted.append((names, *fit_one(cfg, "logreg" if classifier == "late_logreg" else classifier, x, y, actors, seed,
                                       layer_sets(cfg, names, infos, classifier))))

    def branch_probs(inputs):
        return [class_probabilities(scorer, matrix(inputs, names)) for names, _, scorer, _ in fitted]

    fusion, calibration, method = {}, {}, cfg.get("fusion", "grid")
    if classifier == "late_logreg":
        for protocol in PROTOCOLS:
            view = norm.single_clip(val.inputs) if protocol == SINGLE_CLIP else norm.speaker_adapted(val.inputs, val.actors)
            fusion[protocol], calibration[protocol] = fit_fusion(method, branch_probs(view), val.labels)

    def predict(inputs, protocol):
        probs = branch_probs(inputs)
        return fuse(probs, fusion[protocol]) if fusion else probs[0]

    name = f"baseline_{feature_set}_{classifier}"
    test_probs = protocol_probabilities(predict, norm, test)
    val_probs = protocol_probabilities(predict, norm, val, curve=False)
    if predictions is not None:
        from ..metrics import write_predictions

        write_predictions(predictions, {(split, protocol): (part.clips, part.labels, p[protocol])
                                        for split, part, p in (("val", val, val_probs), ("test", test, test_probs))
                                        for protocol in PROTOCOLS})
    result = {**protocol_report(name, test.clips, test.labels, test_probs, Path(metadata)),
              "modality": modality({name: infos[name] for name in data.inputs}), "inputs": list(data.inputs),
              "weights": weights_used, "test_actors": sorted(int(a) for a in np.unique(test.actors)),
              "classifier": classifier, "features": feature_set, "normalization": mode,
              "best_params": {"+".join(names): readable_params(search.best_params_,
                                                               layer_sets(cfg, names, infos, classifier))
                              for names, search, _, _ in fitted},
              "fusion": method if fusion else None,
              "fusion_weights": {p: dict(zip(data.inputs, np.round(w, 3).tolist())) for p, w in fusion.items()},
              **({"fusion_calibration": {p: {k: dict(zip(data.inputs, np.round(v, 3).tolist())) for k, v in c.items()}
                                         for p, c in calibration.items()}} if method == "calibrated" and fusion else {}),
              "cv_fold_actors": fitted[0][1].cv.fold_actors_, "probabilities": fitted[0][3],
              "train_actors": sorted(int(a) for a in np.unique(train.actors)), "n_train": int(len(train.labels)),
              "val": {p: round(float((val_probs[p].argmax(1) == val.labels).mean()), 4) for p in PROTOCOLS},
              "excluded_clips": len(data.excluded)}
    leaked = set(fitted[0][1].cv.actors_) & set(int(a) for a in np.concatenate([val.actors, test.actors]))
    if leaked:  # cannot happen by construction; kept as the guard the metrics file's claim rests on
        raise StageError(f"grid search saw validation/test actors {sorted(leaked)}")
    bundle = {"name": name, "pipelines": [(names, scorer) for names, _, scorer, _ in fitted],
              "feature_set": feature_set, "feature_info": infos,
              "classifier": classifier, "normalization": {"mode": mode, **norm.state_dict()},
              "fusion_weights": fusion, "best_params": result["best_params"], "train_actors": result["train_actors"],
              "n_train_clips": result["n_train"]}
    save_baseline(model_path, bundle)
    write_json(metrics, result)  # no wall time in it: a rerun on the same features writes the same bytes
    return result
