"""Cross-validation folds: literature lists, validation actors from the training actors, a fold of a model
and of a baseline on real clips, the summary per protocol (mean and sample std)."""
import numpy as np
import pytest

from avemo.cv import FOLD_SCHEMES, check_fold, fold_split, pick_val_actors, run_fold
from avemo.cv_summary import summarize, summarize_dir, table
from avemo.data import actor_splits
from avemo.errors import ParamError
from avemo.io import read_json


@pytest.mark.parametrize("scheme", sorted(FOLD_SCHEMES))
def test_every_scheme_tests_each_actor_exactly_once(scheme):
    tested = [a for fold in FOLD_SCHEMES[scheme] for a in fold]
    assert sorted(tested) == list(range(1, 25))


def test_literature_fold_sizes():
    assert [len(f) for f in FOLD_SCHEMES["sequential_6x4"]] == [4] * 6
    assert [len(f) for f in FOLD_SCHEMES["luna_jimenez_5fold"]] == [5, 5, 5, 5, 4]
    assert FOLD_SCHEMES["luna_jimenez_5fold"][0] == [2, 5, 14, 15, 16]
    assert [len(f) for f in FOLD_SCHEMES["emobox_6fold"]] == [4] * 6
    assert FOLD_SCHEMES["emobox_6fold"] != FOLD_SCHEMES["sequential_6x4"]
    assert [len(f) for f in FOLD_SCHEMES["leave_one_actor_out"]] == [1] * 24


@pytest.mark.parametrize("scheme", sorted(FOLD_SCHEMES))
def test_folds_are_speaker_independent_and_validation_comes_from_training_actors(scheme):
    for fold in range(len(FOLD_SCHEMES[scheme])):
        split = fold_split(scheme, fold, range(1, 25), val_actors=4, seed=0)
        parts = actor_splits(range(1, 25), split["test_actors"], split["val_actors"])  # raises on overlap
        assert parts["test"] == sorted(FOLD_SCHEMES[scheme][fold])
        assert len(parts["val"]) == 4 and len(parts["train"]) == 24 - 4 - len(parts["test"])
        assert sum(a % 2 for a in parts["val"]) == 2  # half male (odd ids), half female


def test_validation_draw_is_fixed_by_the_seed_and_differs_between_folds():
    a = fold_split("sequential_6x4", 0, range(1, 25), 4, seed=0)["val_actors"]
    assert a == fold_split("sequential_6x4", 0, range(1, 25), 4, seed=0)["val_actors"]
    assert a != fold_split("sequential_6x4", 1, range(1, 25), 4, seed=0)["val_actors"]


def test_fold_without_any_test_actor_in_the_data_is_skipped_not_faked():
    assert fold_split("sequential_6x4", 5, range(1, 21), 4, seed=0) is None  # actors 21-24 absent
    partial = fold_split("sequential_6x4", 4, [1, 2, 3, 17, 18, 20], 2, seed=0)
    assert partial["test_actors"] == [17, 18, 20] and set(partial["val_actors"]) < {1, 2, 3}


def test_invalid_scheme_and_fold_name_the_valid_ones():
    with pytest.raises(ParamError, match="sequential_6x4"):
        check_fold("ten_fold", 0)
    with pytest.raises(ParamError, match=r"set cv.folds to \[0, 1, 2, 3, 4\]"):
        check_fold("luna_jimenez_5fold", 5)
    with pytest.raises(ParamError, match="leave none for validation"):
        pick_val_actors([3], 1, seed=0)


def _scores(wa, male):
    per_class = {e: {"recall": wa, "f1": wa} for e in ("neutral", "calm")}
    return {"accuracy": wa, "balanced_accuracy": wa, "macro_f1": wa, "n": 10, "per_class": per_class,
            "by_gender": {"male": {"accuracy": male, "n": 5}, "female": {"accuracy": 1 - male, "n": 5}},
            "by_intensity": {"normal": {"accuracy": wa, "n": 6}}}


def _fold(fold, wa, male, skipped=None, adapted=None):
    """A fold's metrics file as evaluate / baselines write it: both protocols, the enrolment curve."""
    if skipped:
        return {"model": "m", "scheme": "s", "fold": fold, "skipped": skipped}
    adapted = wa + 0.1 if adapted is None else adapted
    return {"model": "m", "scheme": "s", "fold": fold, "protocol": "single_clip", "test_actors": [fold],
            "single_clip": _scores(wa, male), "speaker_adapted": _scores(adapted, male),
            "enrolment_curve": {"1": {"accuracy": wa}, "all": {"accuracy": adapted}}, "weights": {"fer": "w"},
            "modality": "video"}


def test_summary_is_mean_and_sample_std_per_protocol_over_the_folds_that_ran():
    s = summarize([_fold(0, 0.5, 0.4), _fold(1, 0.7, 0.6), _fold(2, 0, 0, skipped="no actor")])
    assert s["folds"] == 2 and s["folds_run"] == [0, 1] and s["folds_skipped"] == {"2": "no actor"}
    assert s["test_clips"] == 20 and s["protocol"] == "single_clip"
    sample_std = round(float(np.std([0.5, 0.7], ddof=1)), 4)  # 0.1414, not the population's 0.1
    assert s["single_clip"]["accuracy"] == {"mean": 0.6, "std": sample_std}
    assert s["speaker_adapted"]["accuracy"] == {"mean": 0.7, "std": sample_std}
    assert s["single_clip"]["by_gender"]["male"]["mean"] == pytest.approx(0.5)
    assert s["single_clip"]["per_class"]["calm"]["f1"]["std"] == sample_std
    assert np.isclose(s["single_clip"]["by_gender"]["female"]["mean"], 0.5)
    assert s["enrolment_curve"] == {"1": {"mean": 0.6, "std": sample_std}, "all": {"mean": 0.7, "std": sample_std}}
    assert s["per_fold"]["1"]["speaker_adapted"]["accuracy"] == pytest.approx(0.8) and s["per_fold"]["0"]["test_actors"] == [0]
    one = summarize([_fold(0, 0.5, 0.4)])
    assert one["single_clip"]["accuracy"] == {"mean": 0.5, "std": 0.0}  # one fold: no spread to estimate


def test_summary_refuses_when_no_fold_ran():
    with pytest.raises(ParamError, match="no fold could run"):
        summarize([_fold(0, 0, 0, skipped="none of the fold's test actors")])


@pytest.mark.slow
def test_folds_of_a_model_and_of_a_baseline_on_real_clips(sample_data, tmp_path):
    """run_fold on the sample's actors 1-4, 13, 17, 18 with sequential_6x4: a model fold, a baseline fold,
    a fold none of whose actors is in the data; then the summary of the model's folds."""
    import torch

    torch.set_num_threads(1)
    params = sample_data.params()
    params["cv"].update(scheme="sequential_6x4", val_actors=1, seed=0)
    params["train_defaults"].update(epochs=3, patience=3, augment=False)
    fer = [str(sample_data.features("fer"))]
    metrics = tmp_path / "metrics" / "cv"
    out = tmp_path / "models" / "cv"
    model = {fold: run_fold(params, "fer_linear", fold, fer, sample_data.metadata, out / f"fer_linear/fold{fold}",
                            metrics / "fer_linear" / f"fold{fold}.json") for fold in (1, 4)}
    assert model[1]["skipped"].startswith("none of the fold's test actors [5, 6, 7, 8]")
    fold = model[4]
    assert fold["test_actors"] == [17, 18] and len(fold["val_actors"]) == 1
    assert fold["val_actors"][0] in (1, 2, 3, 4, 13) and fold["single_clip"]["n"] == 16
    assert set(fold["enrolment_curve"]) == {"1", "2", "4", "8", "16", "all"}
    assert (out / "fer_linear/fold4/model.pt").exists() and not (out / "fer_linear/fold4/last").exists()
    predictions = (out / "fer_linear/fold4/predictions.csv").read_text().splitlines()
    assert predictions[0].startswith("clip,split,protocol,p_neutral") and len(predictions) == 1 + 2 * (16 + 8)
    assert read_json(metrics / "fer_linear/fold4.json") == fold

    whisper = [str(sample_data.features("whisper"))]
    baseline = run_fold(params, "whisper-logreg", 0, whisper, sample_data.metadata, out / "baseline/fold0",
                        metrics / "baseline_whisper_logreg" / "fold0.json")
    assert baseline["test_actors"] == [1, 2, 3, 4] and baseline["fold_actors"] == [1, 2, 3, 4]
    assert set(baseline["train_actors"]) | set(baseline["val_actors"]) == {13, 17, 18}
    assert baseline["single_clip"]["n"] == 32 and baseline["model"] == "baseline_whisper_logreg"

    summary = summarize_dir(metrics / "fer_linear", tmp_path / "fer_linear.json")
    assert summary["folds_run"] == [4] and summary["folds_skipped"] == {"1": model[1]["skipped"]}
    assert summary["single_clip"]["accuracy"]["mean"] == fold["single_clip"]["accuracy"]
    assert summary["weights"] == {"fer": "mini_xception:fer2013"} and summary["modality"] == "video"
    assert "| fer_linear | sequential_6x4 | 1 |" in table(tmp_path)
