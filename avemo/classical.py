"""Classical baselines: openSMILE eGeMAPS functionals and mean-pooled face-frame embeddings, classified by
logistic regression, an RBF-kernel SVM and gradient-boosted trees.

The hyper-parameters are chosen by a grid search cross-validated by actor (GroupKFold) over the
training actors only; the chosen model is refitted on those same training actors (as the neural
models train on them; validation actors only pick their epoch) and scored on the test actors with the
metric code of `avemo.evaluate`, so that `metrics/baseline_*.json` reads like `metrics/<model>.json`.
With train_defaults.speaker_norm every input is first standardised per actor over that actor's own
clips (`avemo.data.speaker_normalize`, no labels), as for the neural models; a StandardScaler fitted
on the training fold follows in every pipeline."""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .data import FeatureSet, speaker_normalize, split_feature_set
from .io import as_final, atomic_path, read_json, write_error, write_json
from .errors import ParamError, StageError

# --- eGeMAPS functionals ----------------------------------------------------------------------------

EGEMAPS_SIZE = 88
# Shortest audio window given to openSMILE: its F0 and jitter/shimmer need voiced stretches of several
# 60 ms frames, and below ~0.1 s it returns NaN; half a second still holds a syllable or two.
MIN_WINDOW_S = 0.5

_local = threading.local()


def smile():
    """One openSMILE extractor (eGeMAPSv02 functionals) per thread: an instance is not shared safely."""
    if getattr(_local, "smile", None) is None:
        import opensmile

        _local.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                       feature_level=opensmile.FeatureLevel.Functionals)
    return _local.smile


def egemaps_names() -> list[str]:
    return list(smile().feature_names)


@dataclass
class EgemapsResult:
    clip: str
    status: str  # ok | silent | too_short | failed
    message: str = ""
    seconds: float | None = None  # audio in the window
    features: np.ndarray | None = field(default=None, repr=False)


def egemaps_clip(wav: Path, sample_rate: int, offset_s: float, duration_s: float) -> EgemapsResult:
    """eGeMAPSv02 functionals (88 values) of the window [offset_s, offset_s + duration_s) of `wav`, the
    window the audio models see (not zero-padded: padding would add silence to the loudness and voicing
    statistics). Unreadable, too short and silent windows come back as a status with a message naming
    the file, never as an exception."""
    import soundfile as sf

    from .audio import SILENCE_DBFS, load_wav, peak_frame_dbfs

    wav = Path(wav)
    clip = wav.stem
    try:
        samples = load_wav(wav, sample_rate)
    except (RuntimeError, sf.SoundFileError, OSError) as err:  # LibsndfileError is a RuntimeError
        return EgemapsResult(clip, "failed", f"{wav}: cannot be read ({err})")
    start, length = int(round(offset_s * sample_rate)), int(round(duration_s * sample_rate))
    window = samples[start:start + length]
    seconds = round(len(window) / sample_rate, 3)
    if len(window) < MIN_WINDOW_S * sample_rate:
        return EgemapsResult(clip, "too_short", f"{wav}: only {seconds:.2f} s of audio in the window "
                             f"{offset_s:g}-{offset_s + duration_s:g} s (the file holds "
                             f"{len(samples) / sample_rate:.2f} s); eGeMAPS needs at least {MIN_WINDOW_S:g} s",
                             seconds)
    peak = peak_frame_dbfs(window, sample_rate)
    if peak < SILENCE_DBFS:
        return EgemapsResult(clip, "silent", f"{wav}: the window {offset_s:g}-{offset_s + duration_s:g} s is "
                             f"silent (loudest 50 ms at {peak:.1f} dBFS, below {SILENCE_DBFS:.0f})", seconds)
    try:
        values = smile().process_signal(window, sample_rate).to_numpy(dtype=np.float64).reshape(-1)
    except Exception as err:  # noqa: BLE001 - openSMILE's own errors have no common base class
        return EgemapsResult(clip, "failed", f"{wav}: openSMILE failed ({type(err).__name__}: {err})", seconds)
    if values.shape != (EGEMAPS_SIZE,) or not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        return EgemapsResult(clip, "failed", f"{wav}: openSMILE gave {values.size} values, {bad} of them "
                             f"not finite (expected {EGEMAPS_SIZE} finite)", seconds)
    return EgemapsResult(clip, "ok", seconds=seconds, features=values.astype(np.float32))


def run_egemaps(audio_cfg: dict, audio: Path, out: Path, workers: int | None = None) -> dict:
    """Stage `egemaps`: `out/egemaps.npz` (clips, features [n x 88], names) for every wav of
    `audio/wav`, and `out/report.json` with the clips left out and why. Fails only when no clip at all
    gives features."""
    from .parallel import map_clips

    rate, offset_s, duration_s = audio_cfg["sample_rate"], audio_cfg["offset_s"], audio_cfg["duration_s"]
    if not (isinstance(duration_s, (int, float)) and duration_s > 0) or not (
            isinstance(offset_s, (int, float)) and offset_s >= 0):
        raise ParamError(f"audio.offset_s / audio.duration_s: {offset_s!r} / {duration_s!r} is not a valid "
                         "window; give offset_s >= 0 and duration_s > 0 seconds")
    wav_dir = Path(audio) / "wav"
    wavs = sorted(wav_dir.glob("*.wav"))
    if not wavs:
        raise StageError(f"{wav_dir}: no wav files (run the extract_audio stage first)")
    workers = workers if workers is not None else int(audio_cfg.get("workers", 2))
    results = map_clips(lambda w: egemaps_clip(w, rate, offset_s, duration_s), wavs, workers, "eGeMAPS")
    ok = [r for r in results if r.status == "ok"]
    counts = Counter(r.status for r in results)
    if not ok:
        raise StageError(f"{wav_dir}: no clip gave eGeMAPS features ({dict(counts)}); first problem: "
                         f"{results[0].message}")
    report = {"feature_set": "eGeMAPSv02 functionals", "features": EGEMAPS_SIZE, "sample_rate": rate,
              "window_s": [offset_s, offset_s + duration_s], "counts": dict(counts),
              "skipped": [{k: v for k, v in asdict(r).items() if k != "features"} for r in results if r.status != "ok"]}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        try:
            np.savez(tmp / "egemaps.npz", clips=np.array([r.clip for r in ok]),
                     features=np.stack([r.features for r in ok]), names=np.array(egemaps_names()))
            write_json(tmp / "report.json", report)
        except OSError as err:
            raise StageError(f"{as_final(write_error(err.filename or tmp, err), tmp, out)}; "
                             f"{out} left as it was") from None
    for problem in report["skipped"]:
        print(f"warning: {problem['message']}")
    print(f"egemaps: {dict(counts)}; {len(ok)} x {EGEMAPS_SIZE} features in {out / 'egemaps.npz'}")
    return report


# --- baselines --------------------------------------------------------------------------------------

# Feature set (DVC matrix key and file name) -> the inputs concatenated, in this order.
FEATURE_SETS = {"egemaps": ("egemaps",), "frame_pooled": ("frame_pooled",),
                "egemaps_frame_pooled": ("egemaps", "frame_pooled")}
CLASSIFIERS = ("logreg", "svm", "gbt")


def _input_arrays(name: str, egemaps: Path | None, video: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if name == "egemaps":
        if egemaps is None:
            raise ParamError("feature set needs eGeMAPS features (--egemaps data/egemaps/egemaps.npz)")
        with np.load(egemaps) as arrays:
            return arrays["clips"], arrays["features"].astype(np.float32)
    if video is None:
        raise ParamError("feature set needs frame embeddings (--video data/features/video.npz)")
    with np.load(video) as arrays:  # clips x frames x dim -> clips x dim: the mean over the frames
        return arrays["clips"], arrays["embeddings"].astype(np.float32).mean(axis=1)


def load_baseline_set(feature_set: str, metadata: Path, egemaps: Path | None = None,
                      video: Path | None = None) -> FeatureSet:
    """The clips of the metadata that have every input of `feature_set`; the others are in `excluded`."""
    from .io import choice
    from .metadata import read_metadata

    needs = FEATURE_SETS[choice(feature_set, list(FEATURE_SETS), "baselines feature set")]
    meta = read_metadata(metadata).set_index("clip_id")
    available = {name: _input_arrays(name, egemaps, video) for name in needs}
    index = {name: {str(c): i for i, c in enumerate(clips)} for name, (clips, _) in available.items()}
    clips, excluded = [], []
    for clip in meta.index:
        missing = [name for name in needs if clip not in index[name]]
        (excluded.append({"clip": clip, "reason": f"no {', '.join(missing)} features"}) if missing
         else clips.append(clip))
    if not clips:
        raise StageError(f"{metadata}: no clip has all of {', '.join(needs)} features")
    inputs = {name: available[name][1][[index[name][c] for c in clips]] for name in needs}
    rows = meta.loc[clips]
    return FeatureSet(np.array(clips), rows["label"].to_numpy(), rows["actor"].to_numpy(), inputs, excluded)


def matrix(data: FeatureSet) -> np.ndarray:
    """Clips x features: the inputs side by side, in the order of the feature set."""
    return np.concatenate([v.reshape(len(v), -1) for v in data.inputs.values()], axis=1)


def build_estimator(classifier: str, seed: int):
    """StandardScaler + the classifier with its fixed settings; the grid varies the rest."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from .io import choice

    choice(classifier, CLASSIFIERS, "baselines classifier")
    model = {"logreg": lambda: LogisticRegression(max_iter=5000, random_state=seed),
             "svm": lambda: SVC(kernel="rbf", random_state=seed),
             # no early stopping: it would hold out a random (not actor-disjoint) part of the fold
             "gbt": lambda: HistGradientBoostingClassifier(early_stopping=False, random_state=seed)}[classifier]()
    return Pipeline([("scale", StandardScaler()), ("clf", model)])


def param_grid(estimator, classifier: str, grid: dict) -> dict:
    """`baselines.grids.<classifier>` ({C: [...]}) as GridSearchCV's {clf__C: [...]}, keys checked."""
    if not isinstance(grid, dict) or not grid:
        raise ParamError(f"baselines.grids.{classifier}: give a mapping of parameter -> list of values")
    valid = estimator.named_steps["clf"].get_params()
    out = {}
    for key, values in grid.items():
        if key not in valid:
            raise ParamError(f"baselines.grids.{classifier}.{key}: not a parameter of "
                             f"{type(estimator.named_steps['clf']).__name__}")
        out[f"clf__{key}"] = values if isinstance(values, list) else [values]
    return out


def _group_kfold():
    from sklearn.model_selection import GroupKFold

    class ActorFolds(GroupKFold):
        """GroupKFold by actor that records the actors it was given and each fold's held-out actors, so
        that a run can show (and a test check) that the grid search saw only training actors."""

        def split(self, X, y=None, groups=None):
            groups = np.asarray(groups)
            self.actors_ = sorted(int(a) for a in np.unique(groups))
            self.fold_actors_ = []
            for train_idx, test_idx in super().split(X, y, groups):
                self.fold_actors_.append(sorted(int(a) for a in np.unique(groups[test_idx])))
                yield train_idx, test_idx

    return ActorFolds


def grid_search(train: FeatureSet, classifier: str, grid: dict, folds: int, scoring: str, seed: int,
                threads: int = 1):
    """GridSearchCV over `train` only, folds grouped by actor; refitted on all of `train`."""
    from sklearn.metrics import get_scorer_names
    from sklearn.model_selection import GridSearchCV
    from sklearn.utils._param_validation import InvalidParameterError
    from threadpoolctl import threadpool_limits

    from .io import choice

    choice(scoring, sorted(get_scorer_names()), "baselines.scoring")
    actors = np.unique(train.actors)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ParamError(f"baselines.cv_folds: {folds!r} is not valid; give a whole number of at least 2")
    if len(actors) < 2:
        raise ParamError(f"split: {len(actors)} training actor(s); the grid search needs at least 2 to hold one out")
    if folds > len(actors):  # e.g. a small subset of actors: one fold per actor (leave one actor out)
        print(f"baselines: {len(actors)} training actors, so {len(actors)} folds instead of cv_folds={folds}")
        folds = len(actors)
    estimator = build_estimator(classifier, seed)
    search = GridSearchCV(estimator, param_grid(estimator, classifier, grid), cv=_group_kfold()(n_splits=folds),
                          scoring=scoring, refit=True, n_jobs=1, error_score="raise")
    try:
        with threadpool_limits(limits=threads):
            search.fit(matrix(train), train.labels, groups=train.actors)
    except InvalidParameterError as err:  # a grid value of the wrong type or range
        raise ParamError(f"baselines.grids.{classifier}: {err}") from None
    return search


def probability_model(search, train: FeatureSet, threads: int = 1):
    """(estimator, how) giving class probabilities for the predictions file: the refitted grid-search
    choice when it has `predict_proba` (logreg, gbt); for the SVM, which has none, the same pipeline in
    scikit-learn's CalibratedClassifierCV (sigmoid = Platt scaling, `ensemble=False`: one SVM refitted on
    all training clips, its sigmoids fitted on out-of-fold decision values), the folds grouped by actor
    as in the grid search, so that the calibration is that of unseen speakers. Its argmax can differ from
    the SVM's decision on a few clips; the metrics file keeps the decision."""
    estimator = search.best_estimator_
    if hasattr(estimator, "predict_proba"):
        return estimator, "predict_proba"
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    features = matrix(train)
    folds = list(GroupKFold(n_splits=search.n_splits_).split(features, train.labels, groups=train.actors))
    calibrated = CalibratedClassifierCV(clone(estimator), method="sigmoid", cv=folds, ensemble=False)
    with threadpool_limits(limits=threads):
        calibrated.fit(features, train.labels)
    return calibrated, f"platt (sigmoid on out-of-fold decision values, {len(folds)} folds by actor)"


def class_probabilities(estimator, features: np.ndarray) -> np.ndarray:
    """Clips x all 8 classes: `predict_proba`'s columns (the classes seen in training, `classes_`) put in
    their label columns; a class absent from the training clips gets probability 0."""
    from .ids import EMOTIONS

    probs = np.zeros((len(features), len(EMOTIONS)))
    probs[:, np.asarray(estimator.classes_, dtype=int)] = estimator.predict_proba(features)
    return probs


def run_baseline(cfg: dict, split_cfg: dict, train_cfg: dict, feature_set: str, classifier: str,
                 metadata: Path, metrics: Path, model_path: Path, egemaps: Path | None = None,
                 video: Path | None = None, predictions: Path | None = None) -> dict:
    """Stage `baselines@<feature_set>-<classifier>`: grid search on the training actors, test metrics in
    the format of `evaluate`, the fitted pipeline as a joblib file. `cfg` is params.yaml `baselines`.
    With `predictions`, the validation and test clips' class probabilities in the format of `evaluate`
    (`avemo.evaluate.write_predictions`), so that a baseline can be a member of the `ensemble` stage."""
    import joblib

    from .evaluate import classification_metrics, metrics_report

    started = time.perf_counter()
    data = load_baseline_set(feature_set, metadata, egemaps, video)
    speaker_norm = bool(train_cfg.get("speaker_norm", False))
    if speaker_norm:  # per actor over the actor's own clips, no labels; actors never share a split
        data = speaker_normalize(data)
    parts = split_feature_set(data, split_cfg)
    train, val, test = parts["train"], parts["val"], parts["test"]
    seed = int(train_cfg.get("seed", 0))
    if classifier not in cfg.get("grids", {}):
        raise ParamError(f"baselines.grids.{classifier}: missing; give the parameter grid of {classifier}")
    search = grid_search(train, classifier, cfg["grids"][classifier], cfg["cv_folds"], cfg["scoring"], seed,
                         int(cfg.get("threads", 1)))
    fold_actors = search.cv.fold_actors_
    leaked = set(search.cv.actors_) & set(int(a) for a in np.concatenate([val.actors, test.actors]))
    if leaked:  # cannot happen by construction; kept as the guard the metrics file's claim rests on
        raise StageError(f"grid search saw validation/test actors {sorted(leaked)}")
    predicted = search.predict(matrix(test))
    val_scores = classification_metrics(val.labels, search.predict(matrix(val)))
    if predictions is not None:
        from .evaluate import write_predictions

        scorer, probabilities = probability_model(search, train, int(cfg.get("threads", 1)))
        write_predictions(predictions, {split: (part.clips, part.labels, class_probabilities(scorer, matrix(part)))
                                        for split, part in (("val", val), ("test", test))})
    weights = "n/a"  # the backbone weights matter to frame embeddings only (info.json of the features stage)
    info = Path(video).parent / "info.json" if video is not None else None
    if "frame_pooled" in FEATURE_SETS[feature_set] and info is not None and info.exists():
        weights = read_json(info)["weights"]
    name = f"baseline_{feature_set}_{classifier}"
    result = {**metrics_report(name, test.clips, test.labels, predicted, Path(metadata)),
              "weights": weights, "test_actors": sorted(int(a) for a in np.unique(test.actors)),
              "classifier": classifier, "features": feature_set, "n_features": int(matrix(test).shape[1]),
              "speaker_norm": speaker_norm,
              "best_params": {k.removeprefix("clf__"): v for k, v in search.best_params_.items()},
              "cv_score": round(float(search.best_score_), 4), "cv_scoring": cfg["scoring"],
              "cv_folds": len(fold_actors), "cv_fold_actors": fold_actors,
              "train_actors": sorted(int(a) for a in np.unique(train.actors)), "n_train": int(len(train.labels)),
              "val": {k: val_scores[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "n")},
              "excluded_clips": len(data.excluded),
              "seconds": round(time.perf_counter() - started, 1)}
    if predictions is not None:
        result["probabilities"] = probabilities
    bundle = {"pipeline": search.best_estimator_, "feature_set": feature_set, "inputs": FEATURE_SETS[feature_set],
              "classifier": classifier, "speaker_norm": speaker_norm, "best_params": result["best_params"],
              "train_actors": result["train_actors"]}
    try:
        with atomic_path(model_path) as tmp:
            joblib.dump(bundle, tmp)
    except OSError as err:
        raise StageError(f"{write_error(model_path, err)}; {model_path} left as it was") from None
    write_json(metrics, result)
    return result
