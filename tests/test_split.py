import numpy as np
import pytest

from avemo.data import FeatureSet, actor_splits, check_no_leakage
from avemo.errors import LeakageError, ParamError


def test_train_is_every_other_actor():
    splits = actor_splits(range(1, 21), [17, 18, 19, 20], [13, 14, 15, 16])
    assert splits == {"train": list(range(1, 13)), "val": [13, 14, 15, 16], "test": [17, 18, 19, 20]}


def test_an_actor_in_test_and_validation_is_refused():
    with pytest.raises(LeakageError, match=r"actors \[16\]"):
        actor_splits(range(1, 21), [16, 17], [15, 16])


def test_leakage_guard_catches_any_shared_actor():
    with pytest.raises(LeakageError, match="actor 3 is in both train and test"):
        check_no_leakage({"train": [1, 2, 3], "val": [4], "test": [3, 5]})


def test_empty_partition_is_a_parameter_error():
    with pytest.raises(ParamError, match="no test actor"):
        actor_splits([1, 2, 3, 13], [17], [13])


def test_subsets_by_actor_keep_rows_aligned():
    data = FeatureSet(np.array(["a", "b", "c", "d"]), np.array([0, 1, 2, 3]), np.array([1, 2, 1, 3]),
                      {"x": np.arange(4)[:, None] * 10})
    part = data.subset([1])
    assert part.clips.tolist() == ["a", "c"] and part.inputs["x"][:, 0].tolist() == [0, 20]
    assert not set(part.actors) & set(data.subset([2, 3]).actors)


def _clips(*stems):
    stems = list(stems)
    return FeatureSet(np.array(stems), np.zeros(len(stems), int), np.array([int(s[-2:]) for s in stems]),
                      {"x": np.zeros((len(stems), 1))})


def test_audio_only_and_audio_video_copies_of_one_take_are_refused():
    from avemo.data import split_feature_set

    data = _clips("01-01-03-01-01-01-01", "03-01-03-01-01-01-01", "01-01-03-01-01-01-02", "01-01-03-01-01-01-03")
    with pytest.raises(LeakageError, match=r"01-01-03-01-01-01-01 and 03-01-03-01-01-01-01 are two copies "
                                           r"\(audio-video and audio-only\) of one take"):
        split_feature_set(data, {"test_actors": [3], "val_actors": [2]})


def test_distinct_takes_of_one_actor_pass_the_take_guard():
    from avemo.data import split_feature_set

    data = _clips("01-01-03-01-01-01-01", "01-01-03-01-01-02-01", "01-01-03-01-01-01-02", "01-01-03-01-01-01-03")
    parts = split_feature_set(data, {"test_actors": [3], "val_actors": [2]})
    assert parts["train"].clips.tolist() == ["01-01-03-01-01-01-01", "01-01-03-01-01-02-01"]
