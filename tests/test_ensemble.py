"""Late-fusion ensemble: members chosen on the validation actors only, probabilities that stay
distributions, clear errors for unknown candidates; baselines' probabilities for the predictions files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT

from avemo.baselines.fit import class_probabilities, grid_search, probability_model
from avemo.ensemble import combine, greedy_select, load_candidates, read_predictions, run_ensemble
from avemo.metrics import PROBABILITY_COLUMNS, write_predictions
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


PROTOCOLS = ("single_clip", "speaker_adapted")


def write_candidate(directory: Path, name: str, splits: dict, correct: dict, adapted: dict | None = None,
                    **kw) -> None:
    """A predictions file of both protocols: `correct` for single_clip, `adapted` (default: the same) for
    speaker_adapted."""
    adapted = correct if adapted is None else adapted
    write_predictions(directory / f"{name}.csv", {
        (split, protocol): (splits[split][0], splits[split][1], predictions(splits[split][1], right[split], **kw))
        for split in ("val", "test") for protocol, right in zip(PROTOCOLS, (correct, adapted))})


CFG = {"method": "greedy", "criterion": "log_likelihood", "max_members": 20}


@pytest.mark.parametrize("criterion", ["log_likelihood", "accuracy"])
def test_greedy_selection_follows_validation_and_never_test_labels(clips, tmp_path, criterion):
    splits, preds = clips["splits"], tmp_path / "predictions"
    n_val, n_test = len(splits["val"][0]), len(splits["test"][0])
    # val_star: right on every validation clip, wrong on every test clip; test_star: the reverse.
    write_candidate(preds, "val_star", splits, {"val": np.ones(n_val, bool), "test": np.zeros(n_test, bool)})
    write_candidate(preds, "test_star", splits, {"val": np.zeros(n_val, bool), "test": np.ones(n_test, bool)})
    cfg = {**CFG, "criterion": criterion}
    names = ["test_star", "val_star"]
    result = run_ensemble(cfg, names, preds, clips["metadata"], tmp_path / "ensemble.json", tmp_path / "plots")

    for protocol in PROTOCOLS:
        r = result[protocol]
        assert r["members"] == {"val_star": 1.0}  # the test labels favour test_star: they are not read
        assert r["val"]["accuracy"] == 1.0 and r["accuracy"] == 0.0 and r["n"] == n_test
        assert r["selection"][0]["added"] == "val_star"
    assert result["test_actors"] == list(TEST_ACTORS) and result["protocol"] == "single_clip"
    assert read_json(tmp_path / "ensemble.json") == result
    assert (tmp_path / "plots" / "confusion.csv").exists() and (tmp_path / "plots" / "confusion.png").exists()

    # Rewrite every test row (other probabilities, shuffled labels): the choice does not move.
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(np.array(EMOTIONS)[splits["test"][1]])  # the same new labels in both files
    for name in ("val_star", "test_star"):
        frame = read_predictions(preds / f"{name}.csv")
        test = frame["split"] == "test"
        frame.loc[test, "label"] = np.concatenate([shuffled, shuffled])  # test rows: single clip, then adapted
        frame.loc[test, list(PROBABILITY_COLUMNS)] = rng.dirichlet(np.ones(N_CLASSES), int(test.sum()))
        frame.to_csv(preds / f"{name}.csv", index=False)
    again = run_ensemble(cfg, names, preds, clips["metadata"], tmp_path / "again.json", tmp_path / "plots2")
    for protocol in PROTOCOLS:
        assert again[protocol]["members"] == result[protocol]["members"]
        assert again[protocol]["selection"] == result[protocol]["selection"]
        assert again[protocol]["val"] == result[protocol]["val"]


def test_greedy_adds_the_member_that_helps_on_validation(clips, tmp_path):
    splits, preds = clips["splits"], tmp_path / "predictions"
    labels = splits["val"][1]
    n = len(labels)
    first, second = np.arange(n) < 3 * n // 4, np.arange(n) >= n // 4  # each right on 75 %, errors apart
    test_all = {"test": np.ones(len(splits["test"][0]), bool)}
    write_candidate(preds, "a", splits, {"val": first, **test_all})
    write_candidate(preds, "b", splits, {"val": second, **test_all})
    write_candidate(preds, "a_timid", splits, {"val": first, **test_all}, right=0.5, wrong=0.3)  # a, less sure
    result = run_ensemble(CFG, ["a", "a_timid", "b"], preds, clips["metadata"], tmp_path / "e.json",
                          tmp_path / "plots")["single_clip"]

    # a alone: 75 %; a + b: the confident right member outvotes the wrong one on every clip.
    assert result["candidates"]["a"]["val_accuracy"] == result["candidates"]["b"]["val_accuracy"] == 0.75
    assert result["members"] == {"a": 0.5, "b": 0.5}
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
    write_predictions(tmp_path / "p.csv", {("val", "single_clip"): (clip_ids, labels,
                                                                     rng.dirichlet(np.ones(N_CLASSES), len(clip_ids)))})
    frame = read_predictions(tmp_path / "p.csv")
    assert list(frame.columns) == ["clip", "split", "protocol", *PROBABILITY_COLUMNS, "label"]
    np.testing.assert_allclose(frame[list(PROBABILITY_COLUMNS)].sum(axis=1), 1.0, atol=1e-6)
    assert frame["label"].tolist() == [EMOTIONS[i] for i in labels]


def test_mean_method_weighs_all_candidates_equally(clips, tmp_path):
    splits, preds = clips["splits"], tmp_path / "predictions"
    n_val, n_test = len(splits["val"][0]), len(splits["test"][0])
    for name in ("x", "y", "z"):
        write_candidate(preds, name, splits, {"val": np.ones(n_val, bool), "test": np.ones(n_test, bool)})
    result = run_ensemble({"method": "mean"}, ["x", "y", "z"], preds, clips["metadata"], tmp_path / "e.json",
                          tmp_path / "plots")
    for protocol in PROTOCOLS:
        assert result[protocol]["members"] == {"x": 0.3333, "y": 0.3333, "z": 0.3333}
        assert result[protocol]["selection"] == []
    # the metric fields of evaluate's metrics files (avemo.metrics.protocol_report, per protocol)
    shared = {"accuracy", "balanced_accuracy", "macro_f1", "n", "per_class", "by_gender", "by_intensity"}
    for protocol in PROTOCOLS:
        assert shared <= set(result[protocol])
        assert set(result[protocol]["by_gender"]) == {"male", "female"}
    assert {"model", "protocol", "test_actors"} <= set(result) and result["method"] == "mean"


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
    # the stage reads ./params.yaml `ensemble` and ./run.yaml `run.ensemble`
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ensemble": CFG}))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"run": {"ensemble": {"candidates": ["fusion_kontcat"]}}}))
    run = subprocess.run([sys.executable, str(ROOT / "stages" / "ensemble.py"), "--predictions", str(preds),
                          "--metadata", str(clips["metadata"]), "--metrics", str(tmp_path / "e.json"),
                          "--plots", str(tmp_path / "plots")], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert str(preds / "fusion_kontcat.csv") in run.stderr and "logmel_cnn" in run.stderr
    assert not (tmp_path / "e.json").exists()


def test_each_protocol_chooses_its_own_members_on_validation(clips, tmp_path):
    splits, preds = clips["splits"], tmp_path / "predictions"
    n_val, n_test = len(splits["val"][0]), len(splits["test"][0])
    right = {"val": np.ones(n_val, bool), "test": np.ones(n_test, bool)}
    wrong = {"val": np.zeros(n_val, bool), "test": np.zeros(n_test, bool)}
    write_candidate(preds, "single_star", splits, right, adapted=wrong)
    write_candidate(preds, "adapted_star", splits, wrong, adapted=right)
    result = run_ensemble(CFG, ["single_star", "adapted_star"], preds, clips["metadata"], tmp_path / "e.json",
                          tmp_path / "plots")
    assert result["single_clip"]["members"] == {"single_star": 1.0}
    assert result["speaker_adapted"]["members"] == {"adapted_star": 1.0}
    assert result["single_clip"]["accuracy"] == result["speaker_adapted"]["accuracy"] == 1.0
    confusion = (tmp_path / "plots" / "confusion.csv").read_text().splitlines()  # the headline: single clip
    assert len(confusion) == 1 + n_test and all(a == b for a, b in (row.split(",") for row in confusion[1:]))


def test_baselines_give_probabilities_for_all_classes_svm_included(clips):
    """Real clip ids and actors; features that separate the 7 classes seen in training (surprised never is)."""
    from avemo.metadata import read_metadata

    meta = read_metadata(clips["metadata"])
    meta = meta[meta["actor"].isin(TRAIN_ACTORS) & (meta["label"] < 7)]
    labels, actors = meta["label"].to_numpy(), meta["actor"].to_numpy()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(labels), 5)) + labels[:, None] * 2.0
    grids = {"logreg": {"C": [1.0]}, "svm": {"C": [1.0], "gamma": ["scale"]}}
    for classifier, how in (("logreg", "predict_proba"), ("svm", "platt")):
        search = grid_search(features, labels, actors, classifier, grids[classifier], folds=2,
                             scoring="balanced_accuracy", seed=0)
        assert search.cv.actors_ == list(TRAIN_ACTORS)  # the folds are grouped by actor
        scorer, used = probability_model(search, features, labels, actors)
        assert used.startswith(how)
        probs = class_probabilities(scorer, features)
        assert probs.shape == (len(labels), N_CLASSES) and (probs[:, 7] == 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
        assert (probs.argmax(1) == labels).mean() > 0.9  # separable: the probabilities follow the classes
    assert not hasattr(search.best_estimator_, "predict_proba")  # the SVM of the metrics keeps its decision


@pytest.mark.slow
def test_baseline_and_model_predictions_on_real_clips_make_an_ensemble(sample_data, trained_models, tmp_path):
    """The baselines stage's function and evaluate on real features of the sample write predictions files
    that the ensemble stage's function combines, per protocol, choosing on the validation actor only."""
    from avemo.baselines.fit_and_score import run_baseline
    from avemo.evaluate import evaluate_checkpoint

    params = sample_data.params()
    preds = tmp_path / "predictions"
    features = sample_data.features("whisper").parent
    sample_data.features("fer")
    cfg = {**params["baselines"], "cv_folds": 2, "grids": {"logreg": {"C": [0.01, 1.0]}, "svm": {"C": [1.0],
                                                           "gamma": ["scale"]}}}
    names = []
    for feature_set, classifier in (("whisper", "svm"), ("whisper_fer", "late_logreg")):
        name = f"baseline_{feature_set}_{classifier}"
        result = run_baseline(cfg, params["split"], params["train_defaults"], feature_set, classifier,
                              sample_data.metadata, tmp_path / f"{name}.json", tmp_path / name, features,
                              preds / f"{name}.csv")
        frame = read_predictions(preds / f"{name}.csv")
        assert sorted(set(frame["split"])) == ["test", "val"] and sorted(set(frame["protocol"])) == list(PROTOCOLS)
        assert len(frame) == 2 * (16 + 8)  # both protocols of the 16 test and 8 validation clips, no training clip
        assert result["probabilities"].startswith("platt" if classifier == "svm" else "predict_proba")
        test = frame[(frame["split"] == "test") & (frame["protocol"] == "single_clip")]
        agree = (test[list(PROBABILITY_COLUMNS)].to_numpy().argmax(1) == test["label"].map(EMOTIONS.index)).mean()
        assert abs(agree - result["single_clip"]["accuracy"]) < 0.15  # the probabilities tell what it decides
        names.append(name)
    evaluate_checkpoint(trained_models / "fer_linear.pt", tmp_path / "fer.json", tmp_path / "plots-fer",
                        predictions=preds / "fer_linear.csv")
    names.append("fer_linear")
    ensemble = run_ensemble(params["ensemble"], names, preds, sample_data.metadata, tmp_path / "e.json",
                            tmp_path / "plots")
    for protocol in PROTOCOLS:
        r = ensemble[protocol]
        assert r["n"] == 16 and set(r["members"]) <= set(names) and abs(sum(r["members"].values()) - 1) < 1e-3
        assert r["val"]["n"] == 8 and set(r["candidates"]) == set(names)
    assert ensemble["test_actors"] == [17, 18]


def test_default_candidates_are_stages_of_the_pipeline():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for profile in params["profiles"].values():
        baselines = {"baseline_" + b.replace("-", "_") for b in profile["baselines"]}
        candidates = {c if c in params["models"] else "baseline_" + c.replace("-", "_") for c in profile["ensemble"]}
        assert candidates <= set(profile["models"]) | baselines
    run = yaml.safe_load((ROOT / "run.yaml").read_text())["run"]
    assert run["ensemble"]["candidates"] == [
        c if c in params["models"] else "baseline_" + c.replace("-", "_")
        for c in params["profiles"][run["profile"]]["ensemble"]]
    assert "--predictions metrics/predictions/${key}.csv" in " ".join(dvc["evaluate"]["do"]["cmd"].split())
    assert "--predictions metrics/predictions/${item.name}.csv" in " ".join(dvc["baselines"]["do"]["cmd"].split())
    assert "--predictions metrics/predictions" in dvc["ensemble"]["cmd"]
