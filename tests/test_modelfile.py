"""Model files are data: a crafted pickle is refused and its payload never runs; classifiers stored as arrays
give scikit-learn's probabilities; calibration and the release's branches and model_info."""
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from avemo.baselines.fit import build_estimator
from avemo.calibration import fit_temperature, reliability, scaled
from avemo.errors import StageError
from avemo.modelfile import (ArrayClassifier, export_estimator, load_bundle, load_checkpoint_file, save_bundle,
                             save_checkpoint)
from avemo.predict import load_predictor, resolve_model
from avemo.predict.loading import model_info
from avemo.predict.predictor import Predictor


class Payload:
    """Unpickling this object would create `marker`: the test checks that it never exists."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "models" / "evil.pt"
    crafted.parent.mkdir()
    torch.save({"model": {}, "config": Payload(marker)}, crafted)
    for attempt in (lambda: load_predictor(crafted), lambda: load_predictor("evil", tmp_path / "models"),
                    lambda: load_checkpoint_file(crafted)):
        with pytest.raises(StageError, match="refused without running it") as err:
            attempt()
        assert str(crafted) in str(err.value)
    # a missing model's error lists the names found, opening none of them
    with pytest.raises(StageError, match="available models in .*: evil; or the default, 'release'"):
        resolve_model("absent", tmp_path / "models")
    assert not marker.exists()


def test_a_model_directory_with_a_pickled_array_is_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    directory = tmp_path / "bundle"
    save_bundle(directory, {"format": "avemo-bundle-1"}, {"x": np.zeros(3)})
    with zipfile.ZipFile(directory / "model.npz", "w") as npz, npz.open("x.npy", "w") as handle:
        np.lib.format.write_array(handle, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(StageError, match="refused without running it"):
        load_bundle(directory)
    with pytest.raises(StageError, match="refused without running it"):
        load_predictor(directory)
    assert not marker.exists()


def test_checkpoints_are_plain_data_read_with_weights_only(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "normalization": {"prior": {"fer": {"mean": np.arange(3.0)}}},
             "epoch": np.int64(4), "path": tmp_path, "shape": (3, 4)}
    save_checkpoint(state, tmp_path / "c.pt")
    back = torch.load(tmp_path / "c.pt", weights_only=True)  # would raise on any other object
    assert back["epoch"] == 4 and back["path"] == str(tmp_path) and back["shape"] == (3, 4)
    assert torch.equal(back["normalization"]["prior"]["fer"]["mean"], torch.arange(3.0, dtype=torch.float64))
    assert load_checkpoint_file(tmp_path / "c.pt")["model"]["w"].tolist() == [1.0, 1.0]
    (tmp_path / "cut.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:100])
    with pytest.raises(StageError, match="cut.pt: not a readable model checkpoint"):
        load_checkpoint_file(tmp_path / "cut.pt")


@pytest.mark.parametrize("classifier", ["logreg", "gbt", "svm"])
@pytest.mark.parametrize("classes", [10, 2])
def test_classifiers_stored_as_arrays_give_scikit_learns_probabilities(tmp_path, classifier, classes):
    """Real data (scikit-learn's handwritten digits); the SVM as the baselines calibrate it (Platt scaling)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = x[y < classes], y[y < classes]
    estimator = build_estimator(classifier, 0)
    if classifier == "gbt":
        estimator.set_params(clf__max_iter=15)
    if classifier == "svm":
        estimator = CalibratedClassifierCV(estimator, method="sigmoid", cv=3, ensemble=False)
    train = len(y) * 2 // 3
    estimator.fit(x[:train], y[:train])
    kind, arrays = export_estimator(estimator)
    save_bundle(tmp_path / "m", {"kind": kind}, arrays)
    meta, arrays = load_bundle(tmp_path / "m")
    stored = ArrayClassifier(meta["kind"], arrays)
    np.testing.assert_allclose(stored.predict_proba(x[train:]), estimator.predict_proba(x[train:]), atol=1e-12)
    assert list(stored.classes_) == list(range(classes)) and kind == classifier


def test_temperature_scaling_recovers_the_temperature_that_made_probabilities_overconfident():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 8)) * 1.5
    calibrated = scaled(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1.0)
    labels = np.array([rng.choice(8, p=p) for p in calibrated])  # drawn from the calibrated probabilities
    overconfident = scaled(calibrated, 0.5)
    assert fit_temperature(overconfident, labels) == pytest.approx(2.0, rel=0.1)
    before, after = reliability(overconfident, labels)["ece"], reliability(scaled(overconfident, 2.0), labels)["ece"]
    assert before > 0.1 and after < 0.03
    assert (scaled(overconfident, 2.0).argmax(1) == overconfident.argmax(1)).all()  # accuracy unchanged


def test_a_model_with_branches_answers_from_what_the_file_has():
    branches = {"audio+video": ("whisper", "fer"), "video": ("fer",), "audio": ("whisper",)}
    model = Predictor("m", Path("m"), None, None, {}, {}, "bundle", ("whisper", "fer"), branches=branches)
    assert model.branch_for(True, True) == "audio+video"
    assert model.branch_for(True, False) == "video" and model.branch_for(False, True) == "audio"
    assert model.branch_for(False, False) is None
    video_only = Predictor("v", Path("v"), None, None, {}, {}, "checkpoint", ("fer",))
    assert video_only.branches == {"video": ("fer",)} and video_only.branch_for(False, True) is None


def test_model_info_warns_about_a_model_trained_on_few_actors_or_clips():
    sample = model_info("s", "models/s.pt", {"actors": 8, "clips": 64})
    assert "8 actors and 64 clips" in sample["warning"] and sample["data"] == "8 actors, 64 clips"
    assert model_info("r", "shipped release", {"actors": 20, "clips": 1200, "data": "ravdess-lite"})["warning"] is None
    assert "not recorded" in model_info("o", "old.pt", {})["warning"]


def test_the_default_model_is_the_release_shipped_in_the_package_not_a_file_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "models").mkdir()
    shipped = resolve_model("release")
    assert shipped == Path(__import__("avemo").__file__).parent / "release_model"
    assert sorted(p.name for p in shipped.iterdir()) >= ["MODEL_CARD.md", "model.json", "model.npz"]
    assert os.path.getsize(shipped / "model.npz") < 1_000_000
