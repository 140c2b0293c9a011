"""Cross-validation folds: literature lists, validation actors from the training actors, summary."""
import numpy as np
import pytest

from avemo.cv import FOLD_SCHEMES, check_fold, fold_split, pick_val_actors, summarize
from avemo.data import actor_splits
from avemo.errors import ParamError


@pytest.mark.parametrize("scheme", sorted(FOLD_SCHEMES))
def test_every_scheme_tests_each_actor_exactly_once(scheme):
    tested = [a for fold in FOLD_SCHEMES[scheme] for a in fold]
    assert sorted(tested) == list(range(1, 25))


def test_literature_fold_sizes():
    assert [len(f) for f in FOLD_SCHEMES["sequential_6x4"]] == [4] * 6
    assert [len(f) for f in FOLD_SCHEMES["luna_jimenez_5fold"]] == [5, 5, 5, 5, 4]
    assert FOLD_SCHEMES["luna_jimenez_5fold"][0] == [2, 5, 14, 15, 16]


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


def _fold(fold, wa, male, skipped=None):
    if skipped:
        return {"model": "m", "scheme": "s", "fold": fold, "skipped": skipped}
    per_class = {e: {"recall": wa, "f1": wa} for e in ("neutral", "calm")}
    return {"model": "m", "scheme": "s", "fold": fold, "accuracy": wa, "balanced_accuracy": wa, "macro_f1": wa,
            "n": 10, "per_class": per_class, "test_actors": [fold],
            "by_gender": {"male": {"accuracy": male, "n": 5}, "female": {"accuracy": 1 - male, "n": 5}},
            "by_intensity": {"normal": {"accuracy": wa, "n": 6}}}


def test_summary_is_mean_and_std_over_the_folds_that_ran():
    s = summarize([_fold(0, 0.5, 0.4), _fold(1, 0.7, 0.6), _fold(2, 0, 0, skipped="no actor")])
    assert s["folds"] == 2 and s["folds_skipped"] == {"2": "no actor"} and s["test_clips"] == 20
    assert s["accuracy"] == {"mean": 0.6, "std": 0.1}
    assert s["by_gender"]["male"]["mean"] == pytest.approx(0.5) and s["per_class"]["calm"]["f1"]["std"] == 0.1
    assert np.isclose(s["by_gender"]["female"]["mean"], 0.5)


def test_summary_refuses_when_no_fold_ran():
    with pytest.raises(ParamError, match="no fold could run"):
        summarize([_fold(0, 0, 0, skipped="none of the fold's test actors")])
