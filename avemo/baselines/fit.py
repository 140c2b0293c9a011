"""Fitting a classical baseline: StandardScaler + logistic regression, RBF SVM or gradient-boosted trees,
parameters chosen by a grid search cross-validated by actor (GroupKFold) over the training actors only."""
from __future__ import annotations

import numpy as np

from ..errors import ParamError
from ..io import choice

CLASSIFIERS = ("logreg", "svm", "gbt", "late_logreg")


def build_estimator(classifier: str, seed: int, n_layers: int | None = None):
    """StandardScaler + the classifier with its fixed settings; the grid varies the rest. With `n_layers`, a
    first step keeps the layers the grid chooses."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    choice(classifier, CLASSIFIERS[:3], "baselines classifier")
    model = {"logreg": lambda: LogisticRegression(max_iter=5000, random_state=seed),
             "svm": lambda: SVC(kernel="rbf", random_state=seed),
             # no early stopping: it would hold out a random (not actor-disjoint) part of the fold
             "gbt": lambda: HistGradientBoostingClassifier(early_stopping=False, random_state=seed)}[classifier]()
    steps = [("scale", StandardScaler()), ("clf", model)]
    if not n_layers:
        return Pipeline(steps)
    from .layers import LayerColumns

    return Pipeline([("layers", LayerColumns(n_layers)), *steps])


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


def grid_search(features: np.ndarray, labels: np.ndarray, actors: np.ndarray, classifier: str, grid: dict,
                folds: int, scoring: str, seed: int, threads: int = 1, layers: dict | None = None):
    """GridSearchCV over the training clips only, folds grouped by actor; refitted on all of them. `layers`
    ({'n_layers', 'keep': [positions...]}) adds the choice of the layers kept to the grid."""
    from sklearn.metrics import get_scorer_names
    from sklearn.model_selection import GridSearchCV
    from sklearn.utils._param_validation import InvalidParameterError
    from threadpoolctl import threadpool_limits

    choice(scoring, sorted(get_scorer_names()), "baselines.scoring")
    present = np.unique(actors)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ParamError(f"baselines.cv_folds: {folds!r} is not valid; give a whole number of at least 2")
    if len(present) < 2:
        raise ParamError(f"split: {len(present)} training actor(s); the grid search needs at least 2 to hold one out")
    folds = min(folds, len(present))  # e.g. a small subset of actors: one fold per actor
    estimator = build_estimator(classifier, seed, layers["n_layers"] if layers else None)
    params = param_grid(estimator, classifier, grid)
    if layers:
        params["layers__keep"] = [tuple(k) for k in layers["keep"]]
    search = GridSearchCV(estimator, params, cv=_group_kfold()(n_splits=folds),
                          scoring=scoring, refit=True, n_jobs=1, error_score="raise")
    try:
        with threadpool_limits(limits=threads):
            search.fit(features, labels, groups=actors)
    except InvalidParameterError as err:  # a grid value of the wrong type or range
        raise ParamError(f"baselines.grids.{classifier}: {err}") from None
    return search


def probability_model(search, features: np.ndarray, labels: np.ndarray, actors: np.ndarray, threads: int = 1):
    """(estimator, how) giving class probabilities: the refitted grid-search choice when it has
    `predict_proba` (logreg, gbt); for the SVM, which has none, the same pipeline in scikit-learn's
    CalibratedClassifierCV (sigmoid = Platt scaling, `ensemble=False`: one SVM refitted on all training
    clips, its sigmoids fitted on out-of-fold decision values), the folds grouped by actor as in the
    grid search, so that the calibration is that of unseen speakers."""
    estimator = search.best_estimator_
    if hasattr(estimator, "predict_proba"):
        return estimator, "predict_proba"
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    folds = list(GroupKFold(n_splits=search.n_splits_).split(features, labels, groups=actors))
    calibrated = CalibratedClassifierCV(clone(estimator), method="sigmoid", cv=folds, ensemble=False)
    with threadpool_limits(limits=threads):
        calibrated.fit(features, labels)
    return calibrated, f"platt (sigmoid on out-of-fold decision values, {len(folds)} folds by actor)"


def full_width(pipeline):
    """A (layers, scale, logreg) pipeline as the plain (scale, logreg) pipeline over every stored layer that
    gives the same probabilities: the dropped columns get weight 0. Saved models keep one form."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    layers, scale, clf = (pipeline.named_steps[k] for k in ("layers", "scale", "clf"))
    width = len(scale.mean_) // len(layers.keep)
    n_features = layers.n_layers * width
    kept = np.concatenate([np.arange(k * width, (k + 1) * width) for k in layers.keep])
    wide_scale, wide_clf = clone(scale), clone(clf)
    wide_scale.mean_, wide_scale.var_ = np.zeros(n_features), np.ones(n_features)
    wide_scale.scale_, wide_scale.n_features_in_ = np.ones(n_features), n_features
    wide_scale.n_samples_seen_ = scale.n_samples_seen_
    wide_scale.mean_[kept], wide_scale.var_[kept], wide_scale.scale_[kept] = scale.mean_, scale.var_, scale.scale_
    wide_clf.coef_ = np.zeros((clf.coef_.shape[0], n_features))
    wide_clf.coef_[:, kept] = clf.coef_
    wide_clf.intercept_, wide_clf.classes_, wide_clf.n_features_in_ = clf.intercept_, clf.classes_, n_features
    wide_clf.n_iter_ = clf.n_iter_
    return Pipeline([("scale", wide_scale), ("clf", wide_clf)])


def class_probabilities(estimator, features: np.ndarray) -> np.ndarray:
    """Clips x all 8 classes: `predict_proba`'s columns (the classes seen in training, `classes_`) put in
    their label columns; a class absent from the training clips gets probability 0."""
    from ..ids import EMOTIONS

    probs = np.zeros((len(features), len(EMOTIONS)))
    probs[:, np.asarray(estimator.classes_, dtype=int)] = estimator.predict_proba(features)
    return probs
