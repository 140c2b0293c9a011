"""`avemo.training.train(cfg)` in-process on real features of the embedded sample: the model learns, the
checkpoint holds what inference needs, reruns give the same numbers."""
import numpy as np
import pytest
import torch

from avemo.io import read_json
from avemo.models import build_model
from avemo.training import as_tensors, load_checkpoint, predict_proba, train
from avemo.training.dataset import prepare, protocol_inputs

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def accuracy(model, norm, part) -> float:
    probs = predict_proba(model, as_tensors(protocol_inputs(norm, part, "single_clip")), "cpu")
    return float((probs.argmax(1) == part.labels).mean())


def test_a_tiny_model_learns_its_training_clips(sample_data, tmp_path):
    cfg = sample_data.model_config("whisper_linear", tmp_path / "whisper_linear.pt", epochs=30, patience=30,
                                   batch_size=8, augment=False)
    metrics = train(cfg)
    assert metrics["train_clips"] == 32 and metrics["val_clips"] == 8 and metrics["epochs_run"] == 30
    assert metrics["excluded_clips"] == 0 and metrics["normalization"] == "enrolment"

    model, norm, state = load_checkpoint(cfg["checkpoint"])
    _, parts = prepare(state["config"])
    torch.manual_seed(cfg["train"]["seed"])  # the initial weights of the run: train seeds torch the same way
    untrained = build_model(cfg["architecture"], state["shapes"], cfg["args"])
    last = torch.load(tmp_path / "last" / "whisper_linear.last.pt", map_location="cpu", weights_only=False)
    trained = build_model(cfg["architecture"], state["shapes"], cfg["args"])
    trained.load_state_dict(last["model"])
    learned, before = accuracy(trained, norm, parts["train"]), accuracy(untrained, norm, parts["train"])
    assert learned >= 0.6, learned  # chance: 1/8
    assert learned > before + 0.3, (learned, before)
    # the checkpoint kept is the epoch of the best validation accuracy, and the metrics say which
    assert state["epoch"] == metrics["best_epoch"] and last["epoch"] == 30
    assert accuracy(model, norm, parts["val"]) == pytest.approx(metrics["val_accuracy"], abs=1e-4)


def test_the_checkpoint_holds_what_inference_needs(sample_data, tmp_path):
    cfg = sample_data.model_config("av_late_fusion", tmp_path / "m.pt", epochs=2, patience=2)
    train(cfg)
    state = torch.load(cfg["checkpoint"], map_location="cpu", weights_only=True)  # plain data: no pickled objects
    assert set(state) == {"model", "optimizer", "scheduler", "epoch", "config", "normalization", "shapes", "classes",
                          "feature_info", "training_data"}
    assert state["training_data"] == {"actors": [1, 2, 3, 4], "clips": 32}  # what predict's model_info reports
    assert "runtime" not in state["config"] and state["config"]["inputs"] == cfg["inputs"]
    assert state["shapes"] == {"whisper": (50, 512), "fer": (4, 135)}
    assert state["normalization"]["mode"] == "enrolment" and state["normalization"]["prior_clips"] == 2
    assert set(state["normalization"]["prior"]) == {"whisper", "fer"}
    for name in ("whisper", "fer"):
        assert state["feature_info"][name] == read_json(sample_data.features(name) / "info.json")
    assert state["classes"][0] == "neutral" and len(state["classes"]) == 8


def test_reruns_give_the_same_weights_and_a_gender_model_sees_its_gender_only(sample_data, tmp_path):
    weights = []
    for run in ("a", "b"):
        cfg = sample_data.model_config("fer_linear", tmp_path / run / "m.pt", epochs=3, patience=3)
        metrics = train(cfg)
        weights.append(torch.load(cfg["checkpoint"], weights_only=False)["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    cfg = sample_data.model_config("fer_linear", tmp_path / "male" / "m.pt", epochs=1, patience=1, gender="male")
    male = train(cfg)
    assert (male["train_clips"], male["val_clips"]) == (16, 8)  # actors 1 and 3; validation actor 13 is male too
    data, parts = prepare(cfg)
    assert set(np.unique(data.actors)) == {1, 3, 13, 17} and metrics["train_clips"] == 32
    assert set(parts["test"].actors) == {17}
