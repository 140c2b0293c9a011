"""The evaluation protocols and training modes of avemo.normalize on real features of real clips:
single_clip reads only the training actors' statistics; speaker_adapted (and enrolment) reads the person's
OTHER clips, never the scored one, shrunk towards the training statistics by `prior_clips`."""
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, train_tiny

from avemo.errors import ParamError
from avemo.normalize import ENROLMENT_SIZES, MODES, ProtocolNormalizer, others_matrix

TRAIN, TEST = ("01", "02"), ("17",)  # the person being scored: actor 17, never seen in training
PRIOR_CLIPS = 2.0


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict:
    """FER2013 features of 4 face crops (the one per-clip path: crop_faces, JPEG strip, encoder, float16)
    and the log-mel of the audio window of 24 real clips of the embedded sample (actors 01, 02, 17)."""
    from avemo.audio import extract_audio, load_wav
    from avemo.encoders.registry import load_encoder
    from avemo.io import load_params
    from avemo.preprocess import audio_inputs, face_inputs, strip_round_trip
    from avemo.faces.clip import crop_faces

    params = load_params(path=ROOT / "params.yaml")
    faces = {**params["faces"], "n_frames": 4, "crop_px": 48}
    fer = load_encoder("fer", params["features"]["video"]["fer"])
    logmel = load_encoder("logmel", params["features"]["audio"]["logmel"], params["audio"]["sample_rate"])
    where = tmp_path_factory.mktemp("normalize")
    clips, actors, values = [], [], {"fer": [], "logmel": []}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for actor in TRAIN + TEST:
            with zipfile.ZipFile(ROOT / f"data/sample/Video_Speech_Actor_{actor}.zip") as archive:
                names = sorted(n for n in archive.namelist() if n.endswith(".mp4"))
                for name in names:
                    video = where / Path(name).name
                    video.write_bytes(archive.read(name))
                    values["fer"].append(face_inputs(strip_round_trip(crop_faces(video, faces).crops), {"fer": fer})["fer"])
                    assert extract_audio(video, where / "a.wav", params["audio"]["sample_rate"]).status == "ok"
                    samples = load_wav(where / "a.wav", params["audio"]["sample_rate"])
                    values["logmel"].append(audio_inputs(samples, params["audio"], {"logmel": logmel})["logmel"])
                    clips.append(video.stem)
                    actors.append(int(actor))
    finally:
        torch.set_num_threads(threads)
    inputs = {name: np.stack(v) for name, v in values.items()}
    actors = np.array(actors)
    train = np.isin(actors, [int(a) for a in TRAIN])
    norm = ProtocolNormalizer.fit({k: v[train] for k, v in inputs.items()}, PRIOR_CLIPS)
    test = ~train
    return {"clips": np.array(clips), "actors": actors, "inputs": inputs, "norm": norm, "train": train,
            "test_inputs": {k: v[test] for k, v in inputs.items()}, "test_actors": actors[test]}


def observations(name: str, values: np.ndarray) -> np.ndarray:
    """All observations of a set of clips as rows of features: frames x 135 for FER, mel bands as the
    features of the log-mel (each time step an observation)."""
    values = np.asarray(values, dtype=np.float64)
    if name == "logmel":
        values = np.swapaxes(values, 1, 2)
    return values.reshape(-1, values.shape[-1])


def standardise(name: str, values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    if name == "logmel":
        return (values - mean[:, None]) / std[:, None]
    return (values - mean) / std


def recovered_statistics(norm_call, inputs: dict, i: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The mean and deviation a protocol used for clip i, read off its output for two probes of clip i's
    own values (x and x + 1): output = (x - mean) / std."""
    first = norm_call(inputs)[name][i].astype(np.float64)
    shifted = {k: v.copy() for k, v in inputs.items()}
    shifted[name] = shifted[name].astype(np.float32)
    shifted[name][i] += 1.0
    second = norm_call(shifted)[name][i].astype(np.float64)
    std = 1.0 / (second - first)
    mean = inputs[name][i].astype(np.float64) - first * std
    axis = (1,) if name == "logmel" else (0,)  # one statistic per feature: constant over the other axis
    return mean.mean(axis=axis), std.mean(axis=axis)


def test_single_clip_is_the_training_actors_statistics_only(real):
    norm = real["norm"]
    for name, values in real["inputs"].items():
        train = observations(name, values[real["train"]])
        assert np.allclose(norm.prior[name].mean, train.mean(axis=0), rtol=1e-6, atol=1e-6)
        assert np.allclose(norm.prior[name].var, train.var(axis=0), rtol=1e-5, atol=1e-6)
        out = norm.single_clip(real["test_inputs"])[name]
        expected = standardise(name, real["test_inputs"][name], train.mean(axis=0), train.std(axis=0) + 1e-5)
        assert np.allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_single_clip_of_one_clip_does_not_read_any_other_clip(real):
    norm, inputs = real["norm"], real["test_inputs"]
    alone = norm.single_clip({k: v[:1] for k, v in inputs.items()})
    together = norm.single_clip(inputs)
    replaced = {k: np.concatenate([v[:1], np.random.default_rng(0).normal(50, 30, v[1:].shape).astype(np.float32)])
                for k, v in inputs.items()}
    for name in inputs:
        assert np.array_equal(alone[name][0], together[name][0])
        assert np.array_equal(norm.single_clip(replaced)[name][0], together[name][0])


def test_others_matrix_never_selects_the_scored_clip_and_stays_within_the_actor(real):
    actors = real["actors"]
    rng = np.random.default_rng(0)
    for k in (None, 0) + ENROLMENT_SIZES:
        weights = others_matrix(actors, k, rng)
        assert weights.shape == (len(actors), len(actors))
        assert (np.diag(weights) == 0).all()
        assert (weights[actors[:, None] != actors[None, :]] == 0).all()  # only the same person's clips
        others = 8 - 1  # every sample actor has 8 clips
        assert (weights.sum(axis=1) == (others if k is None else min(k, others))).all()


def test_speaker_adapted_uses_the_other_clips_shrunk_towards_the_training_statistics(real):
    norm, inputs, actors = real["norm"], real["test_inputs"], real["test_actors"]
    for name in inputs:
        for i in (0, 5):
            others = observations(name, np.delete(inputs[name], i, axis=0))
            k = 7
            w = k / (k + PRIOR_CLIPS)
            prior = norm.prior[name]
            mean = w * others.mean(axis=0) + (1 - w) * prior.mean
            var = w * (others.var(axis=0) + (others.mean(axis=0) - mean) ** 2) + \
                (1 - w) * (prior.var + (prior.mean - mean) ** 2)
            used_mean, used_std = recovered_statistics(lambda x: norm.speaker_adapted(x, actors), inputs, i, name)
            assert np.allclose(used_mean, mean, rtol=1e-3, atol=1e-3 * np.abs(mean).max())
            assert np.allclose(used_std, np.sqrt(var) + 1e-5, rtol=1e-3)


def test_the_scored_clips_own_values_never_enter_its_statistics(real):
    norm, inputs, actors = real["norm"], real["test_inputs"], real["test_actors"]
    i = 3
    changed = {k: v.copy() for k, v in inputs.items()}
    for name in changed:
        changed[name][i] = np.random.default_rng(1).normal(100, 50, changed[name][i].shape)
    calls = {"speaker_adapted": lambda x: norm.speaker_adapted(x, actors),
             "enrolment k=2": lambda x: norm.speaker_adapted(x, actors, k=2, seed=3),
             "enrolment training mode": lambda x: norm.training_view(x, actors, "enrolment", np.random.default_rng(7))}
    for what, call in calls.items():
        for name in inputs:
            before = recovered_statistics(call, inputs, i, name)
            after = recovered_statistics(call, changed, i, name)
            # float32 outputs of values ~100 carry ~1e-4 of rounding; a clip entering its own statistics
            # would move them by about its change / 8 clips, i.e. ~10
            assert np.allclose(before[0], after[0], rtol=1e-3, atol=3e-3), (what, name)
            assert np.allclose(before[1], after[1], rtol=1e-3), (what, name)
        # ... while the other clips of the person, whose statistics include clip i, do move
        moved = call(changed)["fer"][np.arange(len(actors)) != i]
        assert not np.allclose(moved, call(inputs)["fer"][np.arange(len(actors)) != i])


def test_no_enrolment_clip_is_exactly_the_training_statistics(real):
    norm, inputs, actors = real["norm"], real["test_inputs"], real["test_actors"]
    k0 = norm.speaker_adapted(inputs, actors, k=0)
    single = norm.single_clip(inputs)
    for name in inputs:
        assert np.array_equal(k0[name], single[name])
    # a person with one clip only has no other clip: the training statistics as well
    lone = {k: v[:1] for k, v in inputs.items()}
    assert all(np.array_equal(norm.speaker_adapted(lone, actors[:1])[k], norm.single_clip(lone)[k]) for k in lone)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_enrolment_of_k_clips_equals_speaker_adapted_from_the_same_k_clips(real, k):
    norm, inputs, actors = real["norm"], real["test_inputs"], real["test_actors"]
    seed = 11
    adapted = norm.speaker_adapted(inputs, actors, k=k, seed=seed)
    chosen = others_matrix(actors, k, np.random.default_rng(seed))  # the draw speaker_adapted made
    for i in range(len(actors)):
        enrol = np.flatnonzero(chosen[i])
        assert len(enrol) == k and i not in enrol
        one = norm.with_enrolment({n: v[i:i + 1] for n, v in inputs.items()}, {n: v[enrol] for n, v in inputs.items()})
        for name in inputs:
            assert np.allclose(one[name][0], adapted[name][i], rtol=1e-5, atol=1e-4)


def test_training_modes_behave_as_documented(real):
    norm = real["norm"]
    inputs, actors = real["inputs"], real["actors"]
    rng = np.random.default_rng(0)
    # global: the training statistics for every clip, as single_clip
    view = norm.training_view(inputs, actors, "global", rng)
    assert all(np.array_equal(view[k], norm.single_clip(inputs)[k]) for k in inputs)
    # speaker: each actor's own statistics over all its clips (the clip itself included), not shrunk
    view = norm.training_view(inputs, actors, "speaker", rng)
    for actor in np.unique(actors):
        for name in inputs:
            own = observations(name, view[name][actors == actor])
            assert np.allclose(own.mean(axis=0), 0, atol=1e-3) and np.allclose(own.std(axis=0), 1, atol=1e-2)
    # enrolment: a new draw each epoch; each clip sees k = 0 (the training statistics), all others, or a few
    single, all_others = norm.single_clip(inputs), norm.speaker_adapted(inputs, actors)
    seen_single, seen_all, views = np.zeros(len(actors), bool), np.zeros(len(actors), bool), []
    for _ in range(40):
        view = norm.training_view(inputs, actors, "enrolment", rng)
        views.append(view["fer"])
        seen_single |= np.array([np.array_equal(view["fer"][i], single["fer"][i]) for i in range(len(actors))])
        seen_all |= np.array([np.allclose(view["fer"][i], all_others["fer"][i], atol=1e-5) for i in range(len(actors))])
    assert seen_single.mean() > 0.8 and seen_all.mean() > 0.8
    assert not np.array_equal(views[0], views[1])
    assert len({v.tobytes() for v in views}) == len(views)


def test_invalid_training_mode_names_the_valid_options(real):
    with pytest.raises(ParamError, match=r"train.normalization: 'per_actor' is not valid; choose one of: "
                                         r"global, speaker, enrolment"):
        real["norm"].training_view(real["inputs"], real["actors"], "per_actor", np.random.default_rng(0))
    from avemo.training import Trainer

    with pytest.raises(ParamError, match=r"train.normalization: 'speaker_norm' is not valid; choose one of: "
                                         + ", ".join(MODES)):
        Trainer({"model": "m", "train": {"normalization": "speaker_norm", "seed": 0}})


def test_raw_inputs_are_left_as_they_are(real):
    norm = ProtocolNormalizer.fit({"wave": np.ones((3, 10), np.float32), "fer": real["inputs"]["fer"][:3]})
    assert "wave" not in norm.prior and "fer" in norm.prior
    out = norm.speaker_adapted({"wave": np.full((2, 10), 7.0, np.float32)}, np.array([1, 1]))
    assert np.array_equal(out["wave"], np.full((2, 10), 7.0, np.float32))


# ---------------------------------------------------------------- a trained model, evaluated


@pytest.mark.slow
def test_single_clip_predictions_do_not_move_when_the_persons_other_clips_change(sample_data, tmp_path):
    """Train fer_linear on the sample; evaluate; then replace every other clip of each test actor (one kept
    per actor) by noise in the features the evaluation reads: the kept clips' single-clip probabilities do
    not move at all, their speaker-adapted ones do."""
    from avemo.evaluate import evaluate_checkpoint
    from avemo.io import read_json
    from avemo.metrics import PROBABILITY_COLUMNS

    torch.set_num_threads(1)
    checkpoint, _ = train_tiny(sample_data, "fer_linear", tmp_path / "models", epochs=8)
    before = tmp_path / "before.csv"
    evaluate_checkpoint(checkpoint, tmp_path / "m.json", tmp_path / "plots", predictions=before)

    state = torch.load(checkpoint, weights_only=False)
    features = Path(state["config"]["inputs"][0])
    copy = tmp_path / "features" / "fer"
    shutil.copytree(features, copy)
    with np.load(features / "features.npz") as arrays:
        clips, values = arrays["clips"], arrays["values"].copy()
    actors = np.array([int(c[-2:]) for c in clips])
    kept = [next(c for c, a in zip(clips, actors) if a == actor) for actor in (17, 18)]
    changed = np.isin(actors, [17, 18]) & ~np.isin(clips, kept)
    values[changed] = np.random.default_rng(0).normal(5, 10, values[changed].shape).astype(values.dtype)
    np.savez(copy / "features.npz", clips=clips, values=values)
    state["config"]["inputs"] = [str(copy)]
    moved = tmp_path / "moved.pt"
    torch.save(state, moved)
    after = tmp_path / "after.csv"
    evaluate_checkpoint(moved, tmp_path / "m2.json", tmp_path / "plots2", predictions=after)

    a, b = (pd.read_csv(p).set_index(["clip", "split", "protocol"]) for p in (before, after))
    columns = list(PROBABILITY_COLUMNS)
    for clip in kept:
        assert (a.loc[(clip, "test", "single_clip"), columns] == b.loc[(clip, "test", "single_clip"), columns]).all()
        assert not np.allclose(a.loc[(clip, "test", "speaker_adapted"), columns].to_numpy(float),
                               b.loc[(clip, "test", "speaker_adapted"), columns].to_numpy(float), atol=1e-4)
    # the validation actor's clips (no test clip among their statistics) move under neither protocol
    assert a.xs("val", level="split")[columns].equals(b.xs("val", level="split")[columns])
    # and the checkpoint's statistics are those of the training actors' clips alone
    train = np.isin(actors, [1, 2, 3, 4])
    with np.load(features / "features.npz") as arrays:
        train_values = observations("fer", arrays["values"][train])
    prior = state["normalization"]["prior"]["fer"]
    assert np.allclose(prior["mean"], train_values.mean(axis=0), atol=1e-4)
    assert np.allclose(prior["var"], train_values.var(axis=0), rtol=1e-3, atol=1e-5)
    assert read_json(tmp_path / "m.json")["single_clip"]["n"] == 16
