"""The released model: the default of `avemo predict` answers whatever a real file has (audio and video, a
silent-track 720p original, a .wav), names itself and gives calibrated confidences; the release stage
writes a model directory and its card; a model trained on a handful of actors is flagged."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avemo.baselines.features import parse_feature_set
from avemo.baselines.fit_and_score import baseline_parts
from avemo.io import load_params, read_json
from avemo.predict import load_predictor, predict_clip
from avemo.predict.loading import RELEASE_DIR

from conftest import venv_env, write_params

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

AV_CLIP = "01-01-08-02-02-02-01.mp4"  # surprised, strong, actor 01, 1280x720 with speech
SILENT = "02-01-01-01-01-01-01.mp4"  # a video-only RAVDESS original: its AAC track is silent


@pytest.fixture(scope="module")
def release():
    return load_predictor("release")


def check_answer(result: dict, branch: str):
    assert result["branch"] == branch
    assert set(result["probabilities"]) == {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
                                            "surprised"}
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-3
    assert result["confidence"] == max(result["probabilities"].values())  # the calibrated probability of the label
    info = result["model_info"]
    assert info["source"] == "shipped release" and info["warning"] is None
    assert info["data"].startswith("ravdess-lite, 20 actors") and info["accuracy"]["folds"] == 5
    assert info["accuracy"]["branch"] == branch and 0.5 < info["accuracy"]["single_clip"] < 1


def test_the_release_answers_a_720p_clip_from_audio_and_video(release, hd_dir):
    check_answer(predict_clip(hd_dir / AV_CLIP, release).as_dict(), "audio+video")


def test_the_release_answers_a_silent_track_720p_original_from_video(release, hd_dir):
    result = predict_clip(hd_dir / SILENT, release).as_dict()
    check_answer(result, "video")
    assert result["audio"]["status"] == "silent" and "answered by the video branch" in result["notes"][0]
    assert set(predict_clip(hd_dir / SILENT, release).inputs) == {"fer", "imagenet"}


def test_the_release_answers_a_wav_from_audio(release, hd_dir, ffmpeg, tmp_path):
    wav = tmp_path / "speech.wav"
    ffmpeg("-i", hd_dir / AV_CLIP, "-vn", "-ac", "1", wav)
    result = predict_clip(wav, release).as_dict()
    check_answer(result, "audio")
    assert result["face"] is None and "has no video stream" in result["notes"][0]


def test_avemo_predict_in_an_empty_directory_uses_the_shipped_release_and_names_it(hd_dir, tmp_path):
    """No models/, no dvc.yaml, a crafted models/ in the working directory: never read."""
    avemo = Path(sys.executable).with_name("avemo")
    if not avemo.exists():
        pytest.skip(f"{avemo}: the avemo console script is not installed (pip install -e .)")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "baseline_whisper_fer_imagenet_late_logreg.pt").write_bytes(b"\x80\x04crafted")
    proc = subprocess.run([str(avemo), "predict", str(hd_dir / AV_CLIP)], cwd=tmp_path, env=venv_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"model: {load_params(path=Path(__file__).parents[1] / 'params.yaml')['release']['name']}" in proc.stdout
    assert "model file: shipped release; trained on ravdess-lite, 20 actors" in proc.stdout
    assert "5-fold cross-validation by actor" in proc.stdout and "branch: audio+video" in proc.stdout


def test_the_shipped_release_has_its_card_and_the_figures_it_claims():
    card = read_json(RELEASE_DIR / "model_card.json")
    assert card["licence"] == "CC BY-NC-SA 4.0" and card["clips"] == 1200 and card["actors"] == list(range(1, 21))
    summary = card["cross_validation"]["summary"]
    assert summary["folds"] == 5 and set(summary["branches"]) == {"audio+video", "video", "audio"}
    pooled = card["cross_validation"]["reliability"]  # over all 1200 test clips: fold means bin 240 clips each
    for by_protocol in pooled.values():
        assert all(curves["after"]["ece"] < curves["before"]["ece"] for curves in by_protocol.values())
    assert pooled["audio+video"]["single_clip"]["after"]["ece"] < 0.5 * pooled["audio+video"]["single_clip"]["before"]["ece"]
    text = (RELEASE_DIR / "MODEL_CARD.md").read_text()
    assert "CC BY-NC-SA 4.0" in text and "| audio+video |" in text and "ECE before" in text
    assert (RELEASE_DIR / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_the_release_stage_on_a_handful_of_actors_writes_a_model_predict_warns_about(sample_data, hd_dir, tmp_path):
    params = sample_data.params()
    params["cv"]["val_actors"] = 1  # 7 actors: a fold leaves 3 to 6 for training and validation
    params["release"]["folds"] = [0, 3, 4]
    params["baselines"].update(cv_folds=2, grids={**params["baselines"]["grids"], "logreg": {"C": [0.01, 1.0]}})
    write_params(sample_data.root, params)
    inputs = [sample_data.features(n) for n in parse_feature_set(baseline_parts(params["release"]["baseline"])[0])]
    out, metrics = tmp_path / "release", tmp_path / "release.json"
    done = sample_data.run("stages/release.py", "--inputs", *inputs, "--metadata", sample_data.metadata,
                           "--out", out, "--metrics", metrics)
    assert f"release {params['release']['name']}: embedded sample, 7 actors, 56 clips" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "model.json", "model.npz",
                                                     "model_card.json", "reliability.png"]
    figures = read_json(metrics)
    assert figures["accuracy"]["folds"] == 3 and set(figures["ece"]) == {"audio+video", "video", "audio"}
    card = read_json(out / "model_card.json")
    assert card["fusion"] == params["baselines"]["fusion"] and f"`{card['fusion']}` late fusion" in (out / "MODEL_CARD.md").read_text()
    assert [f["fold"] for f in card["cross_validation"]["folds"]] == [0, 3, 4]
    for fold in card["cross_validation"]["folds"]:  # test actors never among those that chose anything
        assert not set(fold["test_actors"]) & set(fold["val_actors"])
    model = load_predictor(out)
    result = predict_clip(hd_dir / AV_CLIP, model).as_dict()
    assert result["branch"] == "audio+video" and result["model_info"]["source"] == str(out)
    assert "trained on only 7 actors and 56 clips" in result["model_info"]["warning"]
    assert np.isclose(sum(result["probabilities"].values()), 1, atol=1e-3)
    assert model.prep["encoders"]["whisper_layers"]["windows"] == params["features"]["audio"]["whisper_layers"]["windows"]
    with np.load(sample_data.features("whisper_layers") / "features.npz") as arrays:  # the encode stage's bytes
        stored = dict(zip(arrays["clips"], arrays["values"]))
    for clip in sorted(stored)[:2]:  # predict reads a RAVDESS file's windows exactly as the stage did
        inputs = predict_clip(sample_data.raw / "clips" / f"{clip}.mp4", model).inputs
        assert np.array_equal(inputs["whisper_layers"], stored[clip].astype(np.float32)), clip
