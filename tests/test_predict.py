"""`avemo predict` (`python -m avemo.predict`) on real files: the 720p RAVDESS clips, the embedded sample's clips
and videos made by ffmpeg that are not RAVDESS, with real tiny models trained on the sample (new checkpoint
format: the encode stages' feature_info, the protocol statistics)."""
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from avemo.audio import decode_audio, extract_audio, fix_length, load_wav
from avemo.encoders.registry import load_encoder
from avemo.errors import StageError
from avemo.ids import EMOTIONS
from avemo.predict import build_enrolment, load_predictor, main, predict_clip, resolve_model
from avemo.predict.annotate import annotate_video, clip_annotations, count_frames, frame_boxes
from avemo.predict.loading import INSTALL_ROOT, check_shapes, default_models_dir, preprocessing_of
from avemo.predict.output import aggregate
from avemo.predict.stream import run_stream
from avemo.predict.timeline import frame_rows, summary
from avemo.predict.window import make_grid
from avemo.faces.clip import crop_faces
from avemo.faces.sampling import sample_indices
from avemo.faces.strip import load_strip, save_strip

from conftest import ROOT, train_tiny, venv_env

CLIP = "01-01-08-02-02-02-01.mp4"  # surprised, strong, actor 01, 1280x720 with speech
MODELS = ("fer_linear", "whisper_linear", "av_late_fusion")  # video, audio, audio+video (conftest.trained_models)
N_FRAMES = 4  # the sample data's faces.n_frames (conftest.sample_project), recorded in the checkpoints

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models_dir(trained_models, tmp_path_factory):
    """The session's trained checkpoints, copied: tests may add files next to them."""
    target = tmp_path_factory.mktemp("predict-models")
    for name in MODELS:
        shutil.copyfile(trained_models / f"{name}.pt", target / f"{name}.pt")
    return target


@pytest.fixture(scope="module")
def models(models_dir):
    return {name: load_predictor(name, models_dir) for name in MODELS}


@pytest.fixture(scope="module")
def made(tmp_path_factory, hd_dir, ffmpeg):
    """Videos that are not RAVDESS: a square 400x400 25 fps cut without audio, a face-less test pattern with a
    tone, a wav, and two clips joined into one 6.5 s video."""
    out = tmp_path_factory.mktemp("made")
    files = {"no_audio": out / "holiday clip.mp4", "no_face": out / "pattern.mp4", "wav": out / "speech.wav",
             "long": out / "long.mp4"}
    ffmpeg("-i", hd_dir / CLIP, "-vf", "crop=720:720:280:0,scale=400:400,fps=25", "-an", "-c:v", "libx264",
           "-preset", "veryfast", files["no_audio"])
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i",
           "sine=frequency=300:sample_rate=48000", "-t", "2.5", "-pix_fmt", "yuv420p", "-c:a", "aac", files["no_face"])
    ffmpeg("-i", hd_dir / CLIP, "-vn", "-ac", "1", files["wav"])
    (out / "list.txt").write_text("".join(f"file '{hd_dir / n}'\n" for n in (CLIP, "01-01-01-01-01-01-01.mp4")))
    ffmpeg("-f", "concat", "-safe", "0", "-i", out / "list.txt", "-c", "copy", files["long"])
    return files


def check_probabilities(result: dict):
    assert list(result["probabilities"]) == list(EMOTIONS)
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-3
    assert result["probabilities"][result["label"]] == max(result["probabilities"].values())  # rounded: ties allowed


@pytest.mark.slow
def test_a_real_720p_clip_gets_all_eight_probabilities(models, hd_dir):
    result = predict_clip(hd_dir / CLIP, models["av_late_fusion"]).as_dict()
    check_probabilities(result)
    assert result["face"]["frame_size"] == [1280, 720] and result["face"]["detection_rate"] >= 0.75
    assert result["face"]["sampled"] == N_FRAMES
    assert result["audio"]["status"] == "ok" and 3.0 < result["audio"]["seconds"] < 4.5
    assert result["used_model"] == "av_late_fusion" and not result["fallback"]
    assert result["protocol"] == "single_clip" and result["preprocessing_from"] == "checkpoint"


@pytest.mark.slow
def test_clip_inputs_are_exactly_what_the_stages_compute(models, hd_dir, tmp_path):
    """The stages' path for one clip (crop_faces -> JPEG strip -> FER2013 -> float16; extract_audio -> wav ->
    fixed window -> Whisper -> float16) gives the very arrays predict feeds the model."""
    video, model = hd_dir / CLIP, models["av_late_fusion"]
    faces, audio, encoders = model.prep["faces"], model.prep["audio"], model.prep["encoders"]
    save_strip(crop_faces(video, faces).crops, tmp_path / "strip.jpg")
    crops = load_strip(tmp_path / "strip.jpg", faces["n_frames"])
    expected_fer = load_encoder("fer", encoders["fer"]).encode(crops).astype(np.float16)
    rate = audio["sample_rate"]
    assert extract_audio(video, tmp_path / "a.wav", rate).status == "ok"
    window = fix_length(load_wav(tmp_path / "a.wav", rate), int(audio["duration_s"] * rate),
                        int(audio["offset_s"] * rate))
    expected_whisper = load_encoder("whisper", encoders["whisper"], rate).encode(window).astype(np.float16)
    inputs = predict_clip(video, model).inputs
    assert set(inputs) == {"fer", "whisper"}
    assert np.array_equal(inputs["fer"], expected_fer.astype(np.float32)) and inputs["fer"].shape == (N_FRAMES, 135)
    assert np.array_equal(inputs["whisper"], expected_whisper.astype(np.float32))
    assert inputs["whisper"].shape == (50, 512)


@pytest.mark.slow
def test_single_clip_predictions_equal_the_evaluation_of_the_checkpoint(sample_data, models_dir, models, tmp_path):
    """predict_clip on the original mp4 files of test-actor clips gives the inputs the encode stages stored
    and the class probabilities evaluate wrote for those clips under single_clip."""
    from avemo.evaluate import evaluate_checkpoint
    from avemo.metrics import PROBABILITY_COLUMNS

    name = "av_late_fusion"
    evaluate_checkpoint(models_dir / f"{name}.pt", tmp_path / "m.json", tmp_path / "plots",
                        predictions=tmp_path / "p.csv")
    rows = pd.read_csv(tmp_path / "p.csv")
    rows = rows[(rows["split"] == "test") & (rows["protocol"] == "single_clip")].set_index("clip")
    stored = {}
    for input_name in ("fer", "whisper"):
        with np.load(sample_data.features(input_name) / "features.npz") as arrays:
            stored[input_name] = dict(zip(arrays["clips"], arrays["values"]))
    clips = [c for c in sorted(rows.index) if c.endswith("-17")][:2] + [c for c in sorted(rows.index)
                                                                        if c.endswith("-18")][:1]
    for clip in clips:
        result = predict_clip(sample_data.raw / "clips" / f"{clip}.mp4", models[name])
        for input_name, values in stored.items():
            assert np.array_equal(result.inputs[input_name], values[clip].astype(np.float32)), (clip, input_name)
        expected = rows.loc[clip, list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64)
        assert result.label == rows.loc[clip, list(PROBABILITY_COLUMNS)].astype(float).idxmax()[2:]
        np.testing.assert_allclose(result.probs, expected, atol=1e-5)
    # --enroll with every other clip of the person is the evaluation's speaker_adapted protocol
    check_enrolled_equals_speaker_adapted(sample_data, models[name], tmp_path / "p.csv", clips[0], tmp_path)


def actor_folder(sample_data, actor: int, where: Path) -> Path:
    """The sample's clips of one actor in a folder of their own (what a user gives --enroll)."""
    folder = where / f"actor{actor:02d}"
    folder.mkdir()
    for clip in sorted((sample_data.raw / "clips").glob(f"*-{actor:02d}.mp4")):
        shutil.copy(clip, folder)
    return folder


def check_enrolled_equals_speaker_adapted(sample_data, predictor, predictions: Path, clip: str, where: Path):
    from avemo.metrics import PROBABILITY_COLUMNS

    rows = pd.read_csv(predictions)
    rows = rows[(rows["split"] == "test") & (rows["protocol"] == "speaker_adapted")].set_index("clip")
    folder = actor_folder(sample_data, int(clip[-2:]), where)
    enrolment = build_enrolment([folder], predictor, folder / f"{clip}.mp4")
    assert enrolment.count == 7 and len(enrolment.skipped) == 1  # the person's 7 other clips
    result = predict_clip(folder / f"{clip}.mp4", predictor, enrolment=enrolment)
    assert result.protocol == "speaker_adapted"
    np.testing.assert_allclose(result.probs, rows.loc[clip, list(PROBABILITY_COLUMNS)].to_numpy(float), atol=1e-5)


@pytest.mark.slow
def test_a_baseline_bundle_predicts_a_clip_as_its_evaluation_did(sample_data, tmp_path):
    """A classical baseline (late-fusion logistic regressions on pooled Whisper and FER2013 features) as a
    predict model: its bundle gives the single-clip and speaker-adapted probabilities of its evaluation."""
    from avemo.baselines.fit_and_score import run_baseline
    from avemo.metrics import PROBABILITY_COLUMNS

    params = sample_data.params()
    features = sample_data.features("whisper").parent
    sample_data.features("fer")
    cfg = {**params["baselines"], "cv_folds": 2, "grids": {"logreg": {"C": [0.01, 1.0]}}}
    bundle = tmp_path / "models" / "baselines" / "baseline_whisper_fer_late_logreg"
    run_baseline(cfg, params["split"], params["train_defaults"], "whisper_fer", "late_logreg", sample_data.metadata,
                 tmp_path / "b.json", bundle, features, tmp_path / "b.csv")
    predictor = load_predictor("baseline_whisper_fer_late_logreg", tmp_path / "models")
    assert predictor.kind == "audio+video" and set(predictor.needs) == {"whisper", "fer"}
    rows = pd.read_csv(tmp_path / "b.csv")
    rows = rows[(rows["split"] == "test") & (rows["protocol"] == "single_clip")].set_index("clip")
    clip = sorted(c for c in rows.index if c.endswith("-18"))[0]
    result = predict_clip(sample_data.raw / "clips" / f"{clip}.mp4", predictor)
    np.testing.assert_allclose(result.probs, rows.loc[clip, list(PROBABILITY_COLUMNS)].to_numpy(float), atol=1e-5)
    check_enrolled_equals_speaker_adapted(sample_data, predictor, tmp_path / "b.csv", clip, tmp_path)


@pytest.mark.slow
def test_a_non_ravdess_video_without_audio_works_with_a_video_model_only(models, made, models_dir):
    video = made["no_audio"]
    result = predict_clip(video, models["fer_linear"]).as_dict()
    check_probabilities(result)
    assert result["face"]["frame_size"] == [400, 400] and result["face"]["detection_rate"] >= 0.75
    for name in ("whisper_linear", "av_late_fusion"):
        with pytest.raises(StageError, match="has no audio stream") as err:
            predict_clip(video, models[name], models_dir=models_dir)
        assert str(video) in str(err.value) and "use a model that reads video" in str(err.value)


@pytest.mark.slow
def test_no_face_is_reported_and_audio_fallback_is_used_when_asked(models, made, models_dir):
    video = made["no_face"]
    with pytest.raises(StageError, match=f"no face found in any of the {N_FRAMES} sampled frames") as err:
        predict_clip(video, models["fer_linear"], models_dir=models_dir)
    assert str(video) in str(err.value) and "--audio-fallback AUDIO_MODEL" in str(err.value)
    result = predict_clip(video, models["av_late_fusion"], fallback=models["whisper_linear"]).as_dict()
    check_probabilities(result)
    assert result["fallback"] and result["used_model"] == "whisper_linear" and "no face" in result["notes"][0]


@pytest.mark.slow
def test_audio_only_input_needs_an_audio_model(models, made, models_dir):
    with pytest.raises(StageError, match=r"has no video stream \(audio only\)") as err:
        predict_clip(made["wav"], models["fer_linear"], models_dir=models_dir)
    assert str(made["wav"]) in str(err.value)
    check_probabilities(predict_clip(made["wav"], models["whisper_linear"]).as_dict())


@pytest.mark.slow
def test_the_silent_track_of_a_video_only_ravdess_file_is_refused_by_an_audio_model(models, hd_dir, models_dir):
    video = hd_dir / "02-01-01-01-01-01-01.mp4"
    with pytest.raises(StageError, match=r"audio is silent \(RMS -\d+") as err:
        predict_clip(video, models["whisper_linear"], models_dir=models_dir)
    assert str(video) in str(err.value)


@pytest.mark.slow
def test_missing_model_unreadable_checkpoint_and_unreadable_video(models_dir, models, hd_dir, tmp_path):
    with pytest.raises(StageError, match="model 'nope' not found") as err:
        resolve_model("nope", models_dir)
    assert "available models" in str(err.value) and all(m in str(err.value) for m in MODELS)
    assert resolve_model("fer_linear", models_dir) == models_dir / "fer_linear.pt"
    garbage = tmp_path / "broken.pt"
    garbage.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(StageError, match="not a readable model checkpoint") as err:
        load_predictor(garbage, models_dir)
    assert str(garbage) in str(err.value)
    with pytest.raises(StageError, match="input file not found"):
        predict_clip(tmp_path / "absent.mp4", models["fer_linear"])
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((hd_dir / CLIP).read_bytes()[:4000])
    for name in ("whisper_linear", "av_late_fusion", "fer_linear"):
        with pytest.raises(StageError, match="cut.mp4"):
            predict_clip(truncated, models[name], models_dir=models_dir)


@pytest.mark.slow
def test_preprocessing_comes_from_the_encode_stages_recorded_in_the_checkpoint(models_dir, sample_data):
    from avemo.io import read_json

    path = models_dir / "av_late_fusion.pt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    prep = preprocessing_of(checkpoint, path)
    assert prep["faces"] == read_json(sample_data.faces / "report.json")["config"]
    assert prep["faces"]["n_frames"] == N_FRAMES and "workers" not in prep["faces"]
    assert prep["audio"] == {"sample_rate": 16000, "offset_s": 0.5, "duration_s": 3.0}
    params = sample_data.params()["features"]
    assert prep["encoders"] == {"whisper": params["audio"]["whisper"], "fer": params["video"]["fer"]}
    info = checkpoint["feature_info"]
    assert info["fer"]["weights"] == "mini_xception:fer2013" and info["whisper"]["weights"] == "whisper-base:openai"
    assert checkpoint["shapes"] == {"whisper": (50, 512), "fer": (N_FRAMES, 135)}
    check_shapes(path, checkpoint["shapes"], info)  # as trained
    info["fer"]["shape"] = [16, 135]
    with pytest.raises(StageError, match=re.escape("trained on fer (4, 135) but its encoder gives (16, 135)")):
        check_shapes(path, checkpoint["shapes"], info)


def old_format(checkpoint: dict) -> dict:
    """The checkpoint layout of avemo before the encode stages and the protocols (one Normalizer, the
    preprocessing copied from params.yaml)."""
    old = {k: v for k, v in checkpoint.items() if k not in ("normalization", "feature_info")}
    prior = checkpoint["normalization"]["prior"]
    old["normalizer"] = {name: (s["mean"], s["var"] ** 0.5) for name, s in prior.items()}
    old["feature_info"] = {"weights": "mobilenet_v2:IMAGENET1K_V1",
                           "preprocessing": {"faces": {"n_frames": 16}, "audio": {"sample_rate": 16000}}}
    return old


@pytest.mark.slow
def test_a_checkpoint_of_the_older_format_is_refused_asking_for_a_retrain(models_dir, tmp_path):
    checkpoint = torch.load(models_dir / "fer_linear.pt", map_location="cpu", weights_only=False)
    half = {**checkpoint, "feature_info": {"weights": "mobilenet_v2:IMAGENET1K_V1", "preprocessing": {}}}
    torch.save(half, tmp_path / "half.pt")  # protocol statistics but no encode-stage records
    with pytest.raises(StageError, match=r"half.pt: written by an older avemo .*retrain it with `dvc repro`"):
        load_predictor(tmp_path / "half.pt")
    torch.save(old_format(checkpoint), tmp_path / "old.pt")  # the layout of the previous release
    with pytest.raises(StageError, match=r"old.pt: written by an older avemo .*retrain it with `dvc repro`"):
        load_predictor(tmp_path / "old.pt")


def test_aggregation_by_vote_with_probability_sum_tie_break_and_by_sum():
    probs = np.array([[0.6, 0.4, 0, 0, 0, 0, 0, 0], [0.6, 0.4, 0, 0, 0, 0, 0, 0],
                      [0.1, 0.9, 0, 0, 0, 0, 0, 0], [0.0, 0.2, 0.8, 0, 0, 0, 0, 0]])
    assert aggregate(probs, "vote")["index"] == 0  # two votes for class 0
    assert aggregate(probs, "sum")["index"] == 1  # 1.9 > 1.3
    tie = probs[[0, 2]]  # one vote each: the larger probability sum (1.3 vs 0.7) wins
    assert aggregate(tie, "vote")["index"] == 1 and aggregate(tie[::-1], "vote")["index"] == 1
    assert list(aggregate(probs, "vote")["votes"][:3]) == [2, 1, 1]
    with pytest.raises(StageError, match="no frame has a prediction"):
        aggregate(np.zeros((0, 8)))


def test_every_frame_reuses_the_last_detected_box():
    a, b = (10, 10, 50, 50), (20, 20, 50, 50)
    assert frame_boxes({2: a, 5: None, 7: b}, 9) == [a, a, a, a, a, a, a, b, b]
    assert frame_boxes({3: None}, 2) == [None, None]


def test_the_window_grid_samples_like_the_pipeline_and_shares_frames():
    grid = make_grid(29.97, 3.0, 0.75, 16)
    assert grid.window_frames == 90 and grid.step == 4 and abs(grid.hop_s - 0.7508) < 1e-3
    assert [grid.frame(j) for j in grid.points(0)] == sample_indices(90, 16)
    assert {grid.frame(j) for j in grid.points(1)} <= {grid.frame(j) for j in range(40)}
    assert make_grid(29.97, 3.0, 0.5, 16, total_frames=60).window_frames == 60  # short file: one whole window
    small = make_grid(29.97, 3.0, 0.75, N_FRAMES)  # the sample checkpoints' 4 frames a window
    assert [small.frame(j) for j in small.points(0)] == sample_indices(90, N_FRAMES) and small.step == 1


@pytest.mark.slow
def test_sliding_windows_over_a_long_video_give_a_timeline_and_per_frame_rows(models, made):
    seen = []
    result = run_stream(made["long"], models["fer_linear"], window_s=3.0, hop_s=0.75, on_window=seen.append)
    assert 190 <= result.frames <= 200 and result.frame_size == (1280, 720)
    # 4 frames a window, 22.5 frames apart: a window is complete once its 4th sampled frame is in, so the
    # last one (3.75-6.75 s) samples frame 191 of the 6.5 s file
    assert len(result.windows) == 6 and seen == result.windows
    assert [round(w.start_s, 2) for w in result.windows] == [0.0, 0.75, 1.5, 2.25, 3.0, 3.75]
    assert max(result.grid.frame(j) for j in result.grid.points(5)) < result.frames
    assert all(w.status == "ok" and w.face_rate >= 0.75 for w in result.windows)
    assert all(w.enrolment_clips == 0 for w in result.windows)  # single clip: no statistics of the person
    rows = frame_rows(result)
    assert len(rows) == result.frames and rows[0]["window"] == 0 and rows[-1]["window"] == 5
    out = summary(result, rows, "vote")
    check_probabilities(out)
    assert sum(out["stream"]["votes"].values()) == result.frames
    assert out["stream"]["fps_processed"] > 0 and len(out["timeline"]) == 6


@pytest.mark.slow
def test_live_reading_through_a_pipe_gives_the_same_windows_as_the_file(models, made):
    model = models["av_late_fusion"]  # the audio of both runs differs (pipe vs 16-bit WAV), the frames do not
    from_file = run_stream(made["long"], model, window_s=3.0, hop_s=1.5)
    live = run_stream(made["long"], model, window_s=3.0, hop_s=1.5, live=True)
    assert len(live.windows) == len(from_file.windows) == 3 and live.dropped == 0
    for a, b in zip(live.windows, from_file.windows):
        assert a.index == b.index and a.label == b.label
        assert np.allclose(a.probs, b.probs, atol=2e-2)  # the pipe skips the 16-bit WAV


@pytest.mark.slow
def test_stream_without_a_face_says_so_or_uses_the_audio_fallback_per_window(made, models_dir, capsys):
    args = [str(made["no_face"]), "--models-dir", str(models_dir), "--model", "fer_linear", "--mode", "stream",
            "--window", "1.0", "--hop", "0.5"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert f"{made['no_face']}: no window could be predicted (no_face)" in err and "--audio-fallback" in err
    main(args + ["--audio-fallback", "whisper_linear"])
    out = capsys.readouterr().out
    assert "(audio)" in out and "fallback: predicted with 'whisper_linear'" in out and "prediction: " in out
    assert "stream: 63 frames in 4 windows of 1.0 s every 0.5 s" in out  # 2.5 s at 25 fps


@pytest.mark.slow
@pytest.mark.parametrize("architecture, args, input_name", [
    ("wave_cnn", {"context_s": 0.5}, "wave"),
    ("video3d", {"backbone": "plain3d", "channels": [8, 16]}, "frames")])
def test_models_on_raw_face_crops_or_waveforms_get_them_as_the_stages_store_them(
        architecture, args, input_name, sample_data, made, hd_dir, tmp_path):
    entry = {"architecture": architecture, "args": args, "train": {}}
    checkpoint, _ = train_tiny(sample_data, f"raw_{input_name}", tmp_path, entry, epochs=1, limit_batches=1)
    model = load_predictor(checkpoint, tmp_path)
    assert model.needs == (input_name,)
    result = predict_clip(hd_dir / CLIP, model)
    check_probabilities(result.as_dict())
    assert result.inputs[input_name].shape == tuple(model.checkpoint["shapes"][input_name])
    assert result.inputs[input_name].dtype == (np.uint8 if input_name == "frames" else np.float32)
    if input_name == "frames":  # and per window in stream mode
        assert result.inputs["frames"].shape == (N_FRAMES, 48, 48, 3)
        stream = run_stream(made["no_audio"], model, window_s=3.0, hop_s=1.5)
        assert [w.status for w in stream.windows] == ["ok"]
    else:
        assert result.inputs["wave"].shape == (48000,)


@pytest.mark.slow
def test_annotated_video_without_audio_keeps_size_and_frame_count(models, made, tmp_path):
    video, out = made["no_audio"], tmp_path / "annotated.mp4"
    result = predict_clip(video, models["fer_linear"])
    n = count_frames(video)
    labels, boxes = clip_annotations(result, n)
    info = annotate_video(video, out, labels, boxes, result.classes)
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == n == info["frames"]
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (400, 400)
    assert decode_audio(out, 16000) is None and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow
def test_cli_json_timeline_and_annotated_720p_video_with_audio(hd_dir, models_dir, tmp_path):
    video, out = hd_dir / CLIP, tmp_path / "annotated.mp4"
    proc = subprocess.run([sys.executable, "-m", "avemo.predict", str(video), "--model", "fer_linear",
                           "--models-dir", str(models_dir), "--mode", "stream", "--window", "3", "--json",
                           "--annotate", str(out),
                           "--timeline", str(tmp_path / "t.csv"), "--per-frame", str(tmp_path / "f.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=venv_env())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    check_probabilities(result)
    assert result["mode"] == "stream" and result["stream"]["windows"] >= 1
    n = count_frames(video)
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == n == result["annotated"]["frames"]
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (1280, 720)
    ok, frame = capture.read()
    assert ok and frame.shape == (720, 1280, 3)
    original, kept = decode_audio(video, 16000), decode_audio(out, 16000)
    assert kept is not None and abs(len(kept) - len(original)) < 0.05 * 16000
    assert np.corrcoef(original[:len(kept)][:40000], kept[:40000])[0, 1] > 0.9  # the same sound, not silence
    timeline = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(timeline) == result["stream"]["windows"] and timeline[0]["label"] in EMOTIONS
    assert {"start_s", "end_s", "label", "confidence", "enrolment_clips"} | {f"p_{e}" for e in EMOTIONS} <= \
        set(timeline[0])
    assert len(json.loads((tmp_path / "f.json").read_text())) == n


@pytest.mark.slow
def test_cli_errors_exit_1_with_one_line_and_no_traceback(models_dir, made, capsys):
    proc = subprocess.run([sys.executable, "-m", "avemo.predict", str(made["no_audio"]), "--model", "nope",
                           "--models-dir", str(models_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=venv_env())
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: model 'nope' not found") and "fer_linear" in proc.stderr
    for args, expected in [(["--model", "whisper_linear"], "has no audio stream"),
                           (["--model", "fer_linear", "--audio-fallback", "fer_linear"], "must use audio only"),
                           (["--model", "fer_linear", "--adapt"], "--adapt accumulates statistics over a stream"),
                           (["--model", "fer_linear", "--enroll", "/nonexistent/clips"],
                            "--enroll /nonexistent/clips: no such file or directory")]:
        with pytest.raises(SystemExit) as exit_:
            main([str(made["no_audio"]), "--models-dir", str(models_dir), *args])
        assert exit_.value.code == 1 and expected in capsys.readouterr().err


@pytest.mark.slow
def test_the_avemo_console_script_predicts_from_any_directory(hd_dir, models_dir, tmp_path):
    """`avemo predict VIDEO --model PATH` run from a directory that is not the project: the installed command,
    a checkpoint by path, the preprocessing its encode stages recorded."""
    avemo = Path(sys.executable).with_name("avemo")
    if not avemo.exists():
        pytest.skip(f"{avemo}: the avemo console script is not installed (pip install -e .)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    video = hd_dir / CLIP
    env = {k: v for k, v in venv_env().items() if k != "AVEMO_MODELS"}
    proc = subprocess.run([str(avemo), "predict", str(video), "--model", str(models_dir / "av_late_fusion.pt"),
                           "--json"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    check_probabilities(result)
    assert result["input"] == str(video) and result["mode"] == "clip" and result["model"] == "av_late_fusion"
    assert result["face"]["frame_size"] == [1280, 720] and result["audio"]["status"] == "ok"
    assert result["preprocessing_from"] == "checkpoint" and result["protocol"] == "single_clip"
    assert list(elsewhere.iterdir()) == []  # nothing written where it ran


def test_models_default_to_avemo_models_then_the_project_here_then_the_installed_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("AVEMO_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)  # not a project
    assert INSTALL_ROOT == ROOT and default_models_dir() == ROOT / "models"
    (tmp_path / "models").mkdir()
    assert default_models_dir() == ROOT / "models"  # models/ without dvc.yaml is not a project
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert default_models_dir() == Path.cwd() / "models"
    with pytest.raises(StageError, match=re.escape(f"available models in {Path.cwd() / 'models'}: none")):
        resolve_model("fusion_concat")
    monkeypatch.setenv("AVEMO_MODELS", str(tmp_path / "elsewhere"))
    assert default_models_dir() == tmp_path / "elsewhere"


# ---------------------------------------------------------------- a person's other clips: --enroll, --adapt


@pytest.mark.slow
def test_enrolment_from_a_directory_of_the_persons_clips_adapts_an_audio_model(models, hd_dir, models_dir, tmp_path):
    """Actor 01's 720p folder: 7 audio+video clips and 2 video-only ones (silent tracks). For an audio model
    the scored clip and the 2 silent files are skipped with their reason, 6 clips enrol."""
    model, scored = models["whisper_linear"], hd_dir / CLIP
    enrolment = build_enrolment([hd_dir], model, scored)
    assert enrolment.count == 6 and str(scored) not in enrolment.files
    reasons = {Path(s["file"]).name: s["reason"] for s in enrolment.skipped}
    assert sorted(reasons) == sorted([CLIP, "02-01-01-01-01-01-01.mp4", "02-01-08-02-02-02-01.mp4"])
    assert reasons[CLIP] == "the clip being scored is never its own enrolment"
    assert all("audio is silent" in reasons[n] for n in reasons if n.startswith("02-"))
    assert enrolment.inputs["whisper"].shape == (6, 50, 512)

    single = predict_clip(scored, model)
    adapted = predict_clip(scored, model, enrolment=enrolment)
    assert single.protocol == "single_clip" and adapted.protocol == "speaker_adapted"
    assert np.array_equal(adapted.inputs["whisper"], single.inputs["whisper"])  # the same clip, other statistics
    assert not np.allclose(adapted.probs, single.probs, atol=1e-4)
    from avemo.training import as_tensors, load_checkpoint, predict_proba

    net, norm, _ = load_checkpoint(models_dir / "whisper_linear.pt")  # the model and statistics, independently
    expected = norm.with_enrolment({"whisper": single.inputs["whisper"][None]}, enrolment.inputs)
    assert np.allclose(adapted.probs, predict_proba(net, as_tensors(expected), "cpu")[0], atol=1e-6)
    assert "statistics of 6 enrolment clip(s)" in adapted.notes[-1]

    proc = subprocess.run([sys.executable, "-m", "avemo.predict", str(scored), "--model", "whisper_linear",
                           "--models-dir", str(models_dir), "--enroll", str(hd_dir), "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=venv_env())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["protocol"] == "speaker_adapted" and result["enrolment"]["clips"] == 6
    assert len(result["enrolment"]["skipped"]) == 3
    assert result["probabilities"] == {c: round(float(p), 4) for c, p in zip(EMOTIONS, adapted.probs)}


@pytest.mark.slow
def test_a_video_model_enrols_the_video_only_files_too(models, hd_dir):
    enrolment = build_enrolment([hd_dir], models["fer_linear"], hd_dir / CLIP)
    assert enrolment.count == 8 and len(enrolment.skipped) == 1  # only the scored clip is left out
    assert enrolment.inputs["fer"].shape == (8, N_FRAMES, 135)


@pytest.mark.slow
def test_adapt_in_stream_mode_standardises_each_window_with_the_windows_before_it(models, made):
    model = models["av_late_fusion"]
    plain = run_stream(made["long"], model, window_s=3.0, hop_s=1.5)
    adapted = run_stream(made["long"], model, window_s=3.0, hop_s=1.5, adapt=True)
    assert [w.enrolment_clips for w in adapted.windows] == [0, 1, 2]
    assert np.array_equal(adapted.windows[0].probs, plain.windows[0].probs)  # nothing seen yet: single clip
    assert not np.allclose(adapted.windows[2].probs, plain.windows[2].probs, atol=1e-4)


@pytest.mark.slow
def test_stream_mode_runs_for_an_audio_only_and_a_video_only_checkpoint(models, made):
    """An audio model's checkpoint records no face settings, a video model's no audio window: stream mode
    still samples frames on its grid (4 a window for these) and takes the window length from --window or,
    by default, the audio window of the pipeline (3 s)."""
    audio = run_stream(made["long"], models["whisper_linear"], window_s=3.0, hop_s=1.5)
    assert [w.status for w in audio.windows] == ["ok"] * len(audio.windows) and len(audio.windows) >= 3
    video = run_stream(made["long"], models["fer_linear"], hop_s=1.5)  # no window given
    assert round(video.grid.window_s, 1) == 3.0 and all(w.status == "ok" for w in video.windows)


def test_the_predict_package_has_one_job_per_module_and_no_import_circle():
    """avemo/predict: no module over 300 lines, no private name imported from another module, no import
    circle (the package's __init__ included: no module imports it)."""
    import ast

    package = ROOT / "avemo" / "predict"
    graph = {}
    for path in sorted(package.glob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= 300, path
        imports = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom) and n.level > 0]
        assert not [a.name for n in imports for a in n.names if a.name.startswith("_")], path
        graph[path.stem] = {n.module or "__init__" for n in imports if n.level == 1}
    assert all("__init__" not in deps for name, deps in graph.items() if name != "__init__")

    def reaches(start, target, seen=()):
        return any(d == target or (d not in seen and reaches(d, target, (*seen, d))) for d in graph.get(start, ()))
    assert [name for name in graph if reaches(name, name)] == []
