"""Classical baselines on real clips: eGeMAPS functionals of real wavs, silent / too short / unreadable
wavs reported by name, grid search on the training actors only, metrics in the format of `evaluate`."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import soundfile as sf
import yaml

from conftest import ROOT

from avemo.audio import extract_audio
from avemo.classical import EGEMAPS_SIZE, egemaps_clip, grid_search, load_baseline_set, run_baseline, run_egemaps
from avemo.data import split_feature_set
from avemo.io import read_json
from avemo.metadata import write_metadata

RATE = 16000
AUDIO = {"sample_rate": RATE, "offset_s": 0.5, "duration_s": 3.0}
# Actors of the embedded sample (8 real clips each): 4 train, 1 validation, 1 test actor.
TRAIN, VAL, TEST = [1, 2, 3, 4], [13], [17]
SPLIT = {"test_actors": TEST, "val_actors": VAL}
GRIDS = {"logreg": {"C": [0.01, 1.0]}, "svm": {"C": [1.0], "gamma": ["scale"]},
         "gbt": {"learning_rate": [0.1], "max_depth": [2], "max_iter": [10]}}
CFG = {"cv_folds": 2, "scoring": "balanced_accuracy", "threads": 1, "grids": GRIDS}


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """48 real clips (the sample's actors 1-4, 13, 17), their metadata and their 16 kHz wavs made by
    the project's extract_audio, and their eGeMAPS features made by the egemaps stage's function."""
    root = tmp_path_factory.mktemp("baselines")
    clips = root / "clips"
    clips.mkdir()
    for actor in TRAIN + VAL + TEST:
        with zipfile.ZipFile(ROOT / "data" / "sample" / f"Video_Speech_Actor_{actor:02d}.zip") as archive:
            for name in archive.namelist():
                if name.endswith(".mp4"):
                    (clips / Path(name).name).write_bytes(archive.read(name))
    write_metadata(clips, root / "metadata.csv")
    (root / "audio" / "wav").mkdir(parents=True)
    for video in sorted(clips.glob("*.mp4")):
        assert extract_audio(video, root / "audio" / "wav" / f"{video.stem}.wav", RATE).status == "ok"
    run_egemaps(AUDIO, root / "audio", root / "egemaps", workers=1)
    return root


def test_egemaps_gives_88_finite_functionals_per_real_clip(real):
    with np.load(real / "egemaps" / "egemaps.npz") as arrays:
        clips, features, names = arrays["clips"], arrays["features"], arrays["names"]
    wavs = sorted(p.stem for p in (real / "audio" / "wav").glob("*.wav"))
    assert list(clips) == wavs and len(wavs) == 48
    assert features.shape == (48, EGEMAPS_SIZE) == (48, 88) and len(names) == 88
    assert np.isfinite(features).all()
    assert features.std(axis=0).max() > 0  # real, differing clips, not a constant
    assert "F0semitoneFrom27.5Hz_sma3nz_amean" in names
    report = read_json(real / "egemaps" / "report.json")
    assert report["counts"] == {"ok": 48} and report["skipped"] == []
    # the window of the audio models: a clip's features change when the window moves
    one = real / "audio" / "wav" / f"{wavs[0]}.wav"
    assert not np.allclose(egemaps_clip(one, RATE, 0.5, 3.0).features, egemaps_clip(one, RATE, 0.0, 3.0).features)


def test_silent_short_and_unreadable_wavs_are_reported_not_fatal(real, tmp_path):
    audio = tmp_path / "audio"
    (audio / "wav").mkdir(parents=True)
    good = sorted((real / "audio" / "wav").glob("*.wav"))[:2]
    for wav in good:
        shutil.copy(wav, audio / "wav" / wav.name)
    speech, _ = sf.read(good[0], dtype="float32")
    sf.write(audio / "wav" / "01-01-01-01-01-01-21.wav", np.zeros(4 * RATE, np.float32), RATE, subtype="PCM_16")
    sf.write(audio / "wav" / "01-01-01-01-01-01-22.wav", speech[:int(0.7 * RATE)], RATE, subtype="PCM_16")
    (audio / "wav" / "01-01-01-01-01-01-23.wav").write_bytes(b"RIFF not really a wav")

    report = run_egemaps(AUDIO, audio, tmp_path / "egemaps", workers=1)

    assert report["counts"] == {"ok": 2, "silent": 1, "too_short": 1, "failed": 1}
    skipped = {s["clip"]: s for s in report["skipped"]}
    assert skipped["01-01-01-01-01-01-21"]["status"] == "silent"
    assert skipped["01-01-01-01-01-01-22"]["status"] == "too_short"
    assert skipped["01-01-01-01-01-01-23"]["status"] == "failed"
    for clip, problem in skipped.items():  # each message names the file
        assert str(audio / "wav" / f"{clip}.wav") in problem["message"]
    assert "silent" in skipped["01-01-01-01-01-01-21"]["message"]
    assert "0.20 s of audio in the window 0.5-3.5 s" in skipped["01-01-01-01-01-01-22"]["message"]
    assert read_json(tmp_path / "egemaps" / "report.json") == report
    with np.load(tmp_path / "egemaps" / "egemaps.npz") as arrays:
        assert sorted(arrays["clips"]) == sorted(w.stem for w in good)
        assert arrays["features"].shape == (2, 88)


def test_stage_without_any_usable_clip_fails_with_one_line(tmp_path):
    (tmp_path / "audio" / "wav").mkdir(parents=True)
    sf.write(tmp_path / "audio" / "wav" / "01-01-01-01-01-01-21.wav", np.zeros(4 * RATE, np.float32), RATE)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"audio": AUDIO}))
    run = subprocess.run([sys.executable, str(ROOT / "stages" / "egemaps.py"), "--audio", str(tmp_path / "audio"),
                          "--out", str(tmp_path / "egemaps"), "--params", str(tmp_path / "params.yaml")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1
    error = run.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {tmp_path / 'audio' / 'wav'}: no clip gave eGeMAPS features")
    assert "01-01-01-01-01-01-21.wav" in error and "silent" in error
    assert not (tmp_path / "egemaps").exists()


def test_grid_search_sees_only_training_actors(real):
    data = load_baseline_set("egemaps", real / "metadata.csv", egemaps=real / "egemaps" / "egemaps.npz")
    assert sorted(set(data.actors.tolist())) == sorted(TRAIN + VAL + TEST)
    train = split_feature_set(data, SPLIT)["train"]
    search = grid_search(train, "logreg", GRIDS["logreg"], folds=2, scoring="balanced_accuracy", seed=0)
    # the groups the fitted CV splitter was given, and the actors each fold held out
    assert search.cv.actors_ == TRAIN
    assert sorted(a for fold in search.cv.fold_actors_ for a in fold) == TRAIN
    assert search.n_splits_ == 2 and len(search.cv_results_["params"]) == 2
    assert search.best_estimator_.named_steps["clf"].n_features_in_ == 88
    assert search.best_estimator_.named_steps["scale"].n_samples_seen_ == len(train.labels) == 32


def test_fewer_training_actors_than_folds_gives_one_fold_per_actor(real, tmp_path):
    split = {"test_actors": TEST, "val_actors": VAL + [3, 4]}  # training actors 1 and 2 only
    result = run_baseline({**CFG, "cv_folds": 4}, split, {"speaker_norm": False}, "egemaps", "logreg",
                          real / "metadata.csv", tmp_path / "m.json", tmp_path / "m.joblib",
                          egemaps=real / "egemaps" / "egemaps.npz")
    assert result["cv_folds"] == 2 and sorted(result["cv_fold_actors"]) == [[1], [2]]
    assert result["train_actors"] == [1, 2] and result["n_train"] == 16


@pytest.mark.parametrize("classifier", ["logreg", "svm", "gbt"])
def test_baseline_run_writes_evaluate_format_metrics_and_model(real, tmp_path, classifier):
    metrics, model = tmp_path / "metrics" / f"baseline_egemaps_{classifier}.json", tmp_path / "m.joblib"
    result = run_baseline(CFG, SPLIT, {"speaker_norm": True, "seed": 42}, "egemaps", classifier,
                          real / "metadata.csv", metrics, model, egemaps=real / "egemaps" / "egemaps.npz")
    assert read_json(metrics) == result
    # the same fields as a metrics file of the evaluate stage (a committed one is the reference)
    reference = read_json(ROOT / "docs" / "results" / "ravdess-lite" / "video_lstm.json")
    assert set(reference) - {"best_epoch"} <= set(result)
    assert set(result["per_class"]) == set(reference["per_class"])
    assert set(result["per_class"]["angry"]) == set(reference["per_class"]["angry"])
    assert set(result["by_gender"]) == {"male"} and set(result["by_intensity"]) == {"normal", "strong"}
    assert result["model"] == f"baseline_egemaps_{classifier}" and result["n"] == 8
    assert result["test_actors"] == TEST and result["train_actors"] == TRAIN
    assert 0 <= result["accuracy"] <= 1 and result["val"]["n"] == 8
    assert set(result["best_params"]) == set(GRIDS[classifier]) and 0 <= result["cv_score"] <= 1
    assert sorted(a for fold in result["cv_fold_actors"] for a in fold) == TRAIN
    bundle = joblib.load(model)
    assert bundle["feature_set"] == "egemaps" and bundle["speaker_norm"] is True
    assert bundle["pipeline"].predict(np.zeros((1, 88), np.float32)).shape == (1,)


def test_frame_pooled_is_the_mean_over_frames_and_concatenates_after_egemaps(real, tmp_path):
    rng = np.random.default_rng(0)  # real clip ids, stand-in embeddings: the loader's arithmetic only
    with np.load(real / "egemaps" / "egemaps.npz") as arrays:
        clips, egemaps = arrays["clips"], arrays["features"]
    frames = rng.normal(size=(len(clips), 4, 6)).astype(np.float16)
    np.savez(tmp_path / "video.npz", clips=clips[::-1], embeddings=frames[::-1])
    data = load_baseline_set("egemaps_frame_pooled", real / "metadata.csv", real / "egemaps" / "egemaps.npz",
                             tmp_path / "video.npz")
    order = {c: i for i, c in enumerate(clips)}
    rows = [order[c] for c in data.clips]
    assert np.allclose(data.inputs["egemaps"], egemaps[rows])
    assert np.allclose(data.inputs["frame_pooled"], frames[rows].astype(np.float32).mean(axis=1))
    assert list(data.inputs) == ["egemaps", "frame_pooled"]


@pytest.mark.parametrize("cfg, message", [
    ({**CFG, "scoring": "accuracyy"}, "baselines.scoring: 'accuracyy' is not valid; choose one of:"),
    ({**CFG, "grids": {**GRIDS, "logreg": {"Cc": [1.0]}}},
     "baselines.grids.logreg.Cc: not a parameter of LogisticRegression"),
    ({**CFG, "grids": {**GRIDS, "logreg": {"C": [-1.0]}}}, "baselines.grids.logreg: The 'C' parameter"),
    ({**CFG, "cv_folds": 1}, "baselines.cv_folds: 1 is not valid"),
])
def test_bad_baseline_parameters_are_named(real, tmp_path, cfg, message):
    from avemo.errors import ParamError

    with pytest.raises(ParamError, match=message.replace("(", r"\(").replace(".", r"\.")):
        run_baseline(cfg, SPLIT, {}, "egemaps", "logreg", real / "metadata.csv", tmp_path / "m.json",
                     tmp_path / "m.joblib", egemaps=real / "egemaps" / "egemaps.npz")
    assert not (tmp_path / "m.json").exists()
