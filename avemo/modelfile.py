"""Every model file avemo writes and reads, as data that loads without executing code.

- Network checkpoints: `torch.save` of plain dicts, lists, numbers, strings and tensors (numpy arrays become
  tensors), read with `torch.load(weights_only=True)`, which refuses any other pickled object.
- Classical baselines and the release: a directory holding `model.json` (configuration, statistics, the
  layout of the arrays) and `model.npz` (every array, read with `allow_pickle=False`). The scikit-learn
  estimators are stored as their fitted arrays and their `predict_proba` recomputed from them
  (`ArrayClassifier`): logistic regression, gradient-boosted trees and the Platt-scaled RBF SVM; tests
  check equality with scikit-learn.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import StageError
from .io import atomic_path, read_json, save_npz, write_error, write_json

BUNDLE_JSON, BUNDLE_ARRAYS = "model.json", "model.npz"
KINDS = ("logreg", "gbt", "svm")
REFUSED = ("refused without running it: it holds Python objects other than tensors, lists and dicts "
           "(not a file avemo writes; a pickle can execute code when loaded)")


def plain(value):
    """Numpy arrays -> tensors, numpy scalars -> Python numbers, paths -> strings, recursively: what
    `torch.load(weights_only=True)` accepts."""
    import torch

    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def save_checkpoint(state: dict, path: str | Path) -> None:
    """A checkpoint dict written atomically, as plain data."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(plain(state), tmp)


def load_checkpoint_file(path: str | Path, device="cpu") -> dict:
    """A checkpoint written by save_checkpoint; anything holding other Python objects is refused unrun."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):  # a pickled object: its code would run with weights_only=False
            raise StageError(f"{path}: {REFUSED}") from None
        raise StageError(f"{path}: not a readable model checkpoint (not plain data that avemo writes; "
                         "refused without running it)") from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file raises many unrelated types
        raise StageError(f"{path}: not a readable model checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict):
        raise StageError(f"{path}: not a model checkpoint (a {type(state).__name__}, not a dict)")
    return state


def is_bundle(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / BUNDLE_JSON).is_file() and (path / BUNDLE_ARRAYS).is_file()


def save_bundle(directory: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """model.json + model.npz into `directory`, replaced as a whole (a temporary sibling renamed)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        write_json(tmp / BUNDLE_JSON, meta)
        save_npz(tmp / BUNDLE_ARRAYS, {k: np.asarray(v) for k, v in arrays.items()})
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StageError(f"{write_error(directory, err)}; {directory} left as it was") from None


def load_bundle(directory: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(model.json, the arrays of model.npz) of a bundle directory; object arrays are refused unread."""
    directory = Path(directory)
    if not is_bundle(directory):
        raise StageError(f"{directory}: not a model directory (needs {BUNDLE_JSON} and {BUNDLE_ARRAYS})")
    try:
        meta = read_json(directory / BUNDLE_JSON)
        with np.load(directory / BUNDLE_ARRAYS, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:  # object arrays need pickle: refused
        raise StageError(f"{directory / BUNDLE_ARRAYS}: {REFUSED} ({err})") from None
    except Exception as err:  # noqa: BLE001 - truncated zip, bad JSON...
        raise StageError(f"{directory}: not a readable model directory ({type(err).__name__}: {err})") from None
    return meta, arrays


# --- scikit-learn estimators as arrays ---------------------------------------------------------------------

def softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(axis=1, keepdims=True)


def _binary_or_softmax(raw: np.ndarray) -> np.ndarray:
    if raw.shape[1] == 1:  # binary: one score for the second class
        p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        return np.stack([1 - p, p], axis=1)
    return softmax(raw)


class ArrayClassifier:
    """predict_proba of a fitted StandardScaler + (LogisticRegression | HistGradientBoostingClassifier) pipeline,
    or of that pipeline with an RBF SVC inside CalibratedClassifierCV (sigmoid, ensemble=False), from its
    arrays only. `kind` is logreg, gbt or svm; `arrays` the dict of export_estimator."""

    def __init__(self, kind: str, arrays: dict[str, np.ndarray]):
        if kind not in KINDS:
            raise StageError(f"model classifier '{kind}': avemo stores {', '.join(KINDS)} estimators as arrays")
        self.kind, self.arrays = kind, arrays
        self.classes_ = np.asarray(arrays["classes"])

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if "layer_keep" in self.arrays:  # avemo.baselines.layers.LayerColumns: the layers the grid chose
            blocks = x.reshape(len(x), int(self.arrays["layer_count"]), -1)
            x = blocks[:, self.arrays["layer_keep"]].reshape(len(x), -1)
        return (x - self.arrays["scale_mean"]) / self.arrays["scale_scale"]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = self._scaled(x)
        if self.kind == "logreg":
            return _binary_or_softmax(x @ self.arrays["coef"].T + self.arrays["intercept"])
        if self.kind == "svm":
            return self._platt(self._svm_decision(x))
        return _binary_or_softmax(self._tree_scores(x))

    def _svm_decision(self, x: np.ndarray) -> np.ndarray:
        """libsvm's one-vs-one decision values, turned into scikit-learn's one-vs-rest shape."""
        from sklearn.utils.multiclass import _ovr_decision_function

        a = self.arrays
        kernel = np.exp(-float(a["gamma"]) * ((x[:, None, :] - a["support_vectors"][None]) ** 2).sum(-1))
        starts = np.concatenate([[0], np.cumsum(a["n_support"])])
        n = len(a["n_support"])
        pairs = []
        for i in range(n):
            for j in range(i + 1, n):
                si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                pairs.append(kernel[:, si] @ a["dual_coef"][j - 1, si] + kernel[:, sj] @ a["dual_coef"][i, sj])
        decision = np.stack(pairs, axis=1) + a["intercept"]
        if n == 2:
            return decision
        return _ovr_decision_function(decision < 0, -decision, n)

    def _platt(self, decision: np.ndarray) -> np.ndarray:
        a = self.arrays
        decision = decision.reshape(len(decision), -1)
        probs = 1.0 / (1.0 + np.exp(a["sigmoid_a"] * decision + a["sigmoid_b"]))
        if len(self.classes_) == 2:
            return np.stack([1 - probs[:, 0], probs[:, 0]], axis=1)
        total = probs.sum(axis=1, keepdims=True)
        return np.divide(probs, total, out=np.full_like(probs, 1 / probs.shape[1]), where=total != 0)

    def _tree_scores(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays
        raw = np.tile(a["baseline"].reshape(1, -1), (len(x), 1))
        for tree, (start, stop) in enumerate(a["tree_spans"]):
            raw[:, a["tree_class"][tree]] += leaf_values(a["nodes"][start:stop], x)
        return raw


def leaf_values(nodes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The leaf value each row of x reaches in one tree (sklearn's TreePredictor node array, numeric
    splits: go left when value <= threshold, missing values by missing_go_to_left)."""
    out = np.empty(len(x))
    for i, row in enumerate(x):
        node = nodes[0]
        while not node["is_leaf"]:
            value = row[node["feature_idx"]]
            left = node["missing_go_to_left"] if np.isnan(value) else value <= node["num_threshold"]
            node = nodes[node["left"] if left else node["right"]]
        out[i] = node["value"]
    return out


def layer_arrays(steps) -> dict[str, np.ndarray]:
    """The layers a LayerColumns first step keeps (avemo.baselines.layers), if the pipeline has one."""
    layers = steps.get("layers")
    if layers is None:
        return {}
    return {"layer_count": np.asarray(layers.n_layers), "layer_keep": np.asarray(list(layers.keep), dtype=np.int64)}


def export_svm(calibrated) -> tuple[str, dict[str, np.ndarray]]:
    """The Platt-scaled SVM of avemo.baselines.fit.probability_model (one refitted pipeline)."""
    (inner,) = calibrated.calibrated_classifiers_
    steps = inner.estimator.named_steps
    scaler, svc = steps["scale"], steps["clf"]
    if svc.kernel != "rbf" or inner.method != "sigmoid":
        raise StageError("only an RBF SVM with sigmoid calibration can be saved as arrays")
    return "svm", {**layer_arrays(steps), "scale_mean": scaler.mean_, "scale_scale": scaler.scale_,
                   "classes": np.asarray(svc.classes_),
                   "support_vectors": svc.support_vectors_, "dual_coef": svc.dual_coef_,
                   "intercept": svc.intercept_, "n_support": svc.n_support_, "gamma": np.asarray(svc._gamma),
                   "sigmoid_a": np.array([c.a_ for c in inner.calibrators]),
                   "sigmoid_b": np.array([c.b_ for c in inner.calibrators])}


def export_estimator(estimator) -> tuple[str, dict[str, np.ndarray]]:
    """(kind, arrays) of a fitted StandardScaler + LogisticRegression / HistGradientBoostingClassifier
    pipeline or Platt-scaled SVM; anything else is refused (it could only be stored as a pickle)."""
    if type(estimator).__name__ == "CalibratedClassifierCV":
        return export_svm(estimator)
    steps = getattr(estimator, "named_steps", {})
    scaler, clf = steps.get("scale"), steps.get("clf")
    name = type(clf).__name__
    if scaler is None or name not in ("LogisticRegression", "HistGradientBoostingClassifier"):
        raise StageError(f"{type(estimator).__name__} ({name}): only logistic regression, gradient-boosted "
                         "trees and the calibrated SVM can be saved as arrays")
    arrays = {**layer_arrays(steps), "scale_mean": scaler.mean_, "scale_scale": scaler.scale_,
              "classes": np.asarray(clf.classes_)}
    if name == "LogisticRegression":
        return "logreg", {**arrays, "coef": clf.coef_, "intercept": clf.intercept_}
    if getattr(clf, "is_categorical_", None) is not None and np.any(clf.is_categorical_):
        raise StageError("gradient-boosted trees with categorical features cannot be saved as arrays")
    trees = [(k, p.nodes) for iteration in clf._predictors for k, p in enumerate(iteration)]
    spans, start = [], 0
    for _, nodes in trees:
        spans.append((start, start + len(nodes)))
        start += len(nodes)
    return "gbt", {**arrays, "baseline": np.asarray(clf._baseline_prediction, dtype=np.float64).reshape(-1),
                   "nodes": np.concatenate([n for _, n in trees]), "tree_spans": np.asarray(spans, dtype=np.int64),
                   "tree_class": np.asarray([k for k, _ in trees], dtype=np.int64)}
