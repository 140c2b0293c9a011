"""Late-fusion ensemble: members chosen on the validation actors only, probabilities that stay
distributions, clear errors for unknown candidates; baselines' probabilities for the predictions files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT

from avemo.classical import class_probabilities, grid_search, probability_model
from avemo.data import FeatureSet
from avemo.ensemble import combine, greedy_select, load_candidates, read_predictions, run_ensemble
from avemo.evaluate import PROBABILITY_COLUMNS, write_predictions
from avemo.ids import EMOTIONS
from avemo.io import read_json
from avemo.errors import ParamError
from avemo.metadata import write_metadata

TRAIN_ACTORS, VAL_ACTORS, TEST_ACTORS = (1, 2, 3, 4), (13, 14), (17, 18)
N_CLASSES = len(EMOTIONS)


@pytest.fixture
def clips(tmp_path) -> dict:
    """Real RAVDESS clip ids (empty files) of 4 training, 2 validation and 2 test actors, 4 per emotion
    each, and the metadata table the project writes from them: {split: (clip ids, label indices)}
    (validation and test), metadata path."""
    folder = tmp_path / "clips"
    folder.mkdir()
    for actor in TRAIN_ACTORS + VAL_ACTORS + TEST_ACTORS:
        for emotion in range(1, 9):
            for statement in (1, 2):
                for repetition in (1, 2):
                    (folder / f"01-01-{emotion:02d}-01-{statement:02d}-{repetition:02d}-{actor:02d}.mp4").touch()
    write_metadata(folder, tmp_path / "metadata.csv")
    names = sorted(p.stem for p in folder.glob("*.mp4"))
    out = {}
    for split, actors in (("val", VAL_ACTORS), ("test", TEST_ACTORS)):
        chosen = [c for c in names if int(c[-2:]) in actors]
        out[split] = (np.array(chosen), np.array([int(c[6:8]) - 1 for c in chosen]))
    return {"splits": out, "metadata": tmp_path / "metadata.csv"}


def predictions(labels: np.ndarray, correct: np.ndarray, right: float = 0.9, wrong: float = 0.6) -> np.ndarray:
    """Probabilities that put `right` on the true class where `correct`, else `wrong` on the next class and
    0.1 on the true one; the rest spread evenly over the other classes."""
    probs = np.zeros((len(labels), N_CLASSES))
    for i, (label, ok) in enumerate(zip(labels, correct)):
        if ok:
            probs[i] = (1 - right) / (N_CLASSES - 1)
            probs[i, label] = right
        else:
            probs[i] = (1 - wrong - 0.1) / (N_CLASSES - 2)
            probs[i, (label + 1) % N_CLASSES], probs[i, label] = wrong, 0.1
    return probs


def write_candidate(directory: Path, name: str, splits: dict, correct: dict, **kw) -> None:
    write_predictions(directory / f"{name}.csv", {
        split: (splits[split][0], splits[split][1], predictions(splits[split][1], correct[split], **kw))
        for split in ("val", "test")})


CFG = {"method": "greedy", "criterion": "log_likelihood", "max_members": 20}


@pytest.mark.parametrize("criterion", ["log_likelihood", "accuracy"])
def test_greedy_selection_follows_validation_and_never_test_labels(clips, tmp_path, criterion):
    splits, preds = clips["splits"], tmp_path / "predictions"
    n_val, n_test = len(splits["val"][0]), len(splits["test"][0])
    # val_star: right on every validation clip, wrong on every test clip; test_star: the reverse.
    write_candidate(preds, "val_star", splits, {"val": np.ones(n_val, bool), "test": np.zeros(n_test, bool)})
    write_candidate(preds, "test_star", splits, {"val": np.zeros(n_val, bool), "test": np.ones(n_test, bool)})
    cfg = {**CFG, "criterion": criterion, "candidates": ["test_star", "val_star"]}
    result = run_ensemble(cfg, preds, clips["metadata"], tmp_path / "ensemble.json", tmp_path / "plots")

    assert result["members"] == {"val_star": 1.0}  # the test labels favour test_star: they are not read
    assert result["val"]["accuracy"] == 1.0 and result["accuracy"] == 0.0 and result["n"] == n_test
    assert result["selection"][0]["added"] == "val_star"
    assert result["test_actors"] == list(TEST_ACTORS) and result["val_actors"] == list(VAL_ACTORS)
    assert read_json(tmp_path / "ensemble.json") == result
    assert (tmp_path / "plots" / "confusion.csv").exists() and (tmp_path / "plots" / "confusion.png").exists()

    # Rewrite every test row (other probabilities, shuffled labels): the choice does not move.
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(np.array(EMOTIONS)[splits["test"][1]])  # the same new labels in both files
    for name in ("val_star", "test_star"):
        frame = read_predictions(preds / f"{name}.csv")
        test = frame["split"] == "test"
        frame.loc[test, "label"] = shuffled
        frame.loc[test, list(PROBABILITY_COLUMNS)] = rng.dirichlet(np.ones(N_CLASSES), int(test.sum()))
        frame.to_csv(preds / f"{name}.csv", index=False)
    again = run_ensemble(cfg, preds, clips["metadata"], tmp_path / "again.json", tmp_path / "plots2")
    assert again["members"] == result["members"] and again["selection"] == result["selection"]
    assert again["val"] == result["val"]


def test_greedy_adds_the_member_that_helps_on_validation(clips, tmp_path):
    splits, preds = clips["splits"], tmp_path / "predictions"
    labels = splits["val"][1]
    n = len(labels)
    first, second = np.arange(n) < 3 * n // 4, np.arange(n) >= n // 4  # each right on 75 %, errors apart
    test_all = {"test": np.ones(len(splits["test"][0]), bool)}
    write_candidate(preds, "a", splits, {"val": first, **test_all})
    write_candidate(preds, "b", splits, {"val": second, **test_all})
    write_candidate(preds, "a_timid", splits, {"val": first, **test_all}, right=0.5, wrong=0.3)  # a, less sure
    result = run_ensemble({**CFG, "candidates": ["a", "a_timid", "b"]}, preds, clips["metadata"],
                          tmp_path / "e.json", tmp_path / "plots")

    # a alone: 75 %; a + b: the confident right member outvotes the wrong one on every clip.
    assert result["candidates"]["a"]["val_accuracy"] == result["candidates"]["b"]["val_accuracy"] == 0.75
    assert result["members"] == {"a": 0.5, "b": 0.5} and result["member_counts"] == {"a": 1, "b": 1}
    assert {s["added"] for s in result["selection"][:2]} == {"a", "b"}  # a and b tie up to the file's rounding
    assert result["val"]["accuracy"] == 1.0
    # the best step is kept: later steps (a third member) score lower or equal on validation
    assert all(s["log_likelihood"] <= result["val"]["log_likelihood"] for s in result["selection"])

    # the same through greedy_select on arrays: log-likelihood of the kept mixture is the maximum
    val_probs = np.stack([predictions(labels, first), predictions(labels, second)])
    counts, steps = greedy_select(val_probs, labels, max_members=5)
    assert counts.tolist() == [1, 1] and len(steps) == 5


def test_ensemble_probabilities_are_distributions(clips, tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(N_CLASSES) * 0.3, size=(4, 50))  # 4 candidates x 50 clips
    for weights in ([1, 0, 0, 0], [3, 1, 0, 2], rng.random(4)):
        mixed = combine(probs, np.array(weights, float))
        assert mixed.shape == (50, N_CLASSES) and (mixed >= 0).all()
        np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(combine(probs, np.array([0, 2.0, 0, 0])), probs[1])  # one member: itself
    with pytest.raises(ValueError):
        combine(probs, np.zeros(4))
    # the file the stages write reads back as distributions (7 significant digits kept)
    clip_ids, labels = clips["splits"]["val"]
    write_predictions(tmp_path / "p.csv", {"val": (clip_ids, labels, rng.dirichlet(np.ones(N_CLASSES), len(clip_ids)))})
    frame = read_predictions(tmp_path / "p.csv")
    assert list(frame.columns) == ["clip", "split", *PROBABILITY_COLUMNS, "label"]
    np.testing.assert_allclose(frame[list(PROBABILITY_COLUMNS)].sum(axis=1), 1.0, atol=1e-6)
    assert frame["label"].tolist() == [EMOTIONS[i] for i in labels]


def test_mean_method_weighs_all_candidates_equally(clips, tmp_path):
    splits, preds = clips["splits"], tmp_path / "predictions"
    n_val, n_test = len(splits["val"][0]), len(splits["test"][0])
    for name in ("x", "y", "z"):
        write_candidate(preds, name, splits, {"val": np.ones(n_val, bool), "test": np.ones(n_test, bool)})
    result = run_ensemble({"method": "mean", "candidates": ["x", "y", "z"]}, preds, clips["metadata"],
                          tmp_path / "e.json", tmp_path / "plots")
    assert result["members"] == {"x": 0.3333, "y": 0.3333, "z": 0.3333} and result["selection"] == []
    # the metric fields of evaluate's metrics files (a committed one is the reference)
    reference = read_json(ROOT / "docs" / "results" / "ravdess-lite" / "video_lstm.json")
    shared = {"model", "accuracy", "balanced_accuracy", "macro_f1", "n", "per_class", "by_gender", "by_intensity",
              "test_actors"}
    assert shared <= set(reference) and shared <= set(result)
    assert set(result["by_gender"]) == set(reference["by_gender"])


def test_unknown_candidate_names_the_missing_file_and_the_valid_names(clips, tmp_path):
    splits, preds = clips["splits"], tmp_path / "predictions"
    n_val, n_test = len(splits["val"][0]), len(splits["test"][0])
    for name in ("logmel_cnn", "baseline_egemaps_logreg"):
        write_candidate(preds, name, splits, {"val": np.ones(n_val, bool), "test": np.ones(n_test, bool)})
    with pytest.raises(ParamError) as err:
        load_candidates(preds, ["logmel_cnn", "fusion_kontcat"])
    message = str(err.value)
    assert str(preds / "fusion_kontcat.csv") in message
    assert "valid names: baseline_egemaps_logreg, logmel_cnn" in message

    # the stage: exit code 1, one line naming both, no traceback
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"ensemble": {**CFG, "candidates": ["fusion_kontcat"]}}))
    run = subprocess.run([sys.executable, str(ROOT / "stages" / "ensemble.py"), "--predictions", str(preds),
                          "--metadata", str(clips["metadata"]), "--metrics", str(tmp_path / "e.json"),
                          "--plots", str(tmp_path / "plots"), "--params", str(params)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert str(preds / "fusion_kontcat.csv") in run.stderr and "logmel_cnn" in run.stderr
    assert not (tmp_path / "e.json").exists()


def test_baselines_give_probabilities_for_all_classes_svm_included():
    rng = np.random.default_rng(0)
    actors = np.repeat([1, 2, 3, 4], 14)
    labels = np.tile(np.arange(7), 8)  # surprised (7) never seen in training
    features = rng.normal(size=(len(labels), 5)) + labels[:, None] * 2.0
    train = FeatureSet(np.array([f"c{i}" for i in range(len(labels))]), labels, actors, {"x": features})
    grids = {"logreg": {"C": [1.0]}, "svm": {"C": [1.0], "gamma": ["scale"]}}
    for classifier, how in (("logreg", "predict_proba"), ("svm", "platt")):
        search = grid_search(train, classifier, grids[classifier], folds=2, scoring="balanced_accuracy", seed=0)
        scorer, used = probability_model(search, train)
        assert used.startswith(how)
        probs = class_probabilities(scorer, features)
        assert probs.shape == (len(labels), N_CLASSES) and (probs[:, 7] == 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
        assert (probs.argmax(1) == labels).mean() > 0.9  # separable: the probabilities follow the classes
    assert not hasattr(search.best_estimator_, "predict_proba")  # the SVM of the metrics keeps its decision


@pytest.mark.parametrize("classifier", ["svm", "logreg"])
def test_a_baseline_run_writes_predictions_an_ensemble_takes(clips, tmp_path, classifier):
    from avemo.classical import run_baseline
    from avemo.metadata import read_metadata

    meta = read_metadata(clips["metadata"])
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(meta), 88)) + meta["label"].to_numpy()[:, None] * 0.5  # learnable
    np.savez(tmp_path / "egemaps.npz", clips=meta["clip_id"].to_numpy(dtype=str), features=features.astype(np.float32),
             names=np.array([f"f{i}" for i in range(88)]))
    cfg = {"cv_folds": 2, "scoring": "balanced_accuracy", "threads": 1,
           "grids": {"svm": {"C": [1.0], "gamma": ["scale"]}, "logreg": {"C": [0.1]}}}
    preds = tmp_path / "predictions"
    result = run_baseline(cfg, {"val_actors": list(VAL_ACTORS), "test_actors": list(TEST_ACTORS)},
                          {"speaker_norm": True, "seed": 0}, "egemaps", classifier, clips["metadata"],
                          tmp_path / "m.json", tmp_path / "m.joblib", egemaps=tmp_path / "egemaps.npz",
                          predictions=preds / f"baseline_egemaps_{classifier}.csv")
    frame = read_predictions(preds / f"baseline_egemaps_{classifier}.csv")
    for split, (clip_ids, labels) in clips["splits"].items():
        rows = frame[frame["split"] == split]
        assert sorted(rows["clip"]) == sorted(clip_ids)  # validation and test clips, no training clip
    assert result["probabilities"].startswith("platt" if classifier == "svm" else "predict_proba")
    test = frame[frame["split"] == "test"]
    agree = (test[list(PROBABILITY_COLUMNS)].to_numpy().argmax(1) == test["label"].map(EMOTIONS.index)).mean()
    assert abs(agree - result["accuracy"]) < 0.1  # the probabilities tell what the classifier decides
    ensemble = run_ensemble({**CFG, "candidates": [f"baseline_egemaps_{classifier}"]}, preds, clips["metadata"],
                            tmp_path / "e.json", tmp_path / "plots")
    assert ensemble["members"] == {f"baseline_egemaps_{classifier}": 1.0} and ensemble["n"] == len(test)


def test_default_candidates_are_stages_of_the_pipeline():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["ensemble"]
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    models = next(v["model_names"] for v in dvc["vars"] if "model_names" in v)
    grid = dvc["stages"]["baselines"]["matrix"]
    baselines = {f"baseline_{f}_{c}" for f in grid["features"] for c in grid["classifier"]}
    assert set(params["candidates"]) <= set(models) | baselines
    assert "metrics/predictions" in dvc["stages"]["ensemble"]["deps"]
    assert "--predictions metrics/predictions/${item.model}.csv" in dvc["stages"]["evaluate"]["cmd"]
