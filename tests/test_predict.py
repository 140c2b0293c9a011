"""`avemo predict` (`python -m avemo.predict`) on real files: the 720p RAVDESS clips and videos made by ffmpeg
that are not RAVDESS."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avemo.audio import LogMel, decode_audio, extract_audio, fix_length, load_wav
from avemo.config import model_config
from avemo.encoders.imagenet import bgr_to_tensor, embed, load_backbone
from avemo.ids import EMOTIONS
from avemo.io import load_params
from avemo.errors import ParamError, StageError
from avemo.models import ARCHITECTURES, build_model, model_inputs
from avemo.predict import load_predictor, main, predict_clip, resolve_model
from avemo.predict.annotate import annotate_video, clip_annotations, count_frames, frame_boxes
from avemo.predict.loading import INSTALL_ROOT, check_shapes, default_models_dir, default_params, preprocessing_of
from avemo.predict.output import aggregate
from avemo.predict.stream import run_stream
from avemo.predict.timeline import frame_rows, summary
from avemo.predict.window import make_grid
from avemo.train import Normalizer
from avemo.video import crop_faces, load_strip, sample_indices, save_strip

from conftest import ROOT

CLIP = "01-01-08-02-02-02-01.mp4"  # surprised, strong, actor 01, 1280x720 with speech
MODELS = ("logmel_cnn", "video_lstm", "fusion_concat")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """As the CLI does (`--threads 1`): on a busy 2-core CPU, 2 spinning torch threads are 10-100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def untrained_checkpoint(path: Path, name: str, architecture: str | None = None, args: dict | None = None) -> None:
    """A checkpoint in `train`'s format (model from params.yaml, or the architecture and args given; recorded
    preprocessing) with untrained weights: a fresh clone has no trained models/, and these tests check the
    mechanics, not the accuracy."""
    params = load_params(path=ROOT / "params.yaml")
    cfg = model_config(params, name, features="data/features", metadata="data/raw/metadata.csv", checkpoint=str(path)) \
        if architecture is None else {"model": name, "architecture": architecture, "args": args or {}}
    prep = {k: params[k] for k in ("faces", "audio", "features")}
    f, audio, size = prep["faces"], prep["audio"], load_backbone(prep["features"]["backbone"], None)[1]
    length = int(audio["duration_s"] * audio["sample_rate"])
    shapes = {"video": (f["n_frames"], size), "logmel": (audio["n_mels"], length // 160 + 1), "audio_emb": (size,),
              "frames": (f["n_frames"], f["size"], f["size"], 3), "wave": (length,)}
    shapes = {k: shapes[k] for k in model_inputs(cfg["architecture"], cfg["args"])}
    stats = {"video": (np.zeros((1, size)), np.ones((1, size))), "audio_emb": (np.zeros(size), np.ones(size)),
             "logmel": (np.full((audio["n_mels"], 1), -40.0), np.full((audio["n_mels"], 1), 20.0))}
    torch.manual_seed(0)
    model = build_model(cfg["architecture"], shapes, cfg["args"])
    normalizer = Normalizer({k: tuple(a.astype(np.float32) for a in stats[k]) for k in shapes if k in stats})
    torch.save({"model": model.state_dict(), "optimizer": None, "scheduler": None, "epoch": 0, "config": cfg,
                "normalizer": normalizer.state_dict(), "shapes": shapes, "classes": list(EMOTIONS),
                "feature_info": {"weights": f"{prep['features']['backbone']}:{prep['features']['weights']}",
                                 "preprocessing": prep}}, path)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A snapshot of the trained checkpoints (the pipeline may rewrite models/ while tests run); untrained
    ones in the same format where models/ has none (fresh clone)."""
    source = Path(os.environ.get("AVEMO_MODELS", ROOT / "models"))
    target = tmp_path_factory.mktemp("models")
    for name in MODELS:
        if (source / f"{name}.pt").exists():
            shutil.copyfile(source / f"{name}.pt", target / f"{name}.pt")
        else:
            untrained_checkpoint(target / f"{name}.pt", name)
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


def test_a_real_720p_clip_gets_all_eight_probabilities(models, hd_dir):
    result = predict_clip(hd_dir / CLIP, models["fusion_concat"]).as_dict()
    check_probabilities(result)
    assert result["face"]["frame_size"] == [1280, 720] and result["face"]["detection_rate"] >= 0.75
    assert result["audio"]["status"] == "ok" and 3.0 < result["audio"]["seconds"] < 4.5
    assert result["used_model"] == "fusion_concat" and not result["fallback"]


def test_clip_inputs_are_exactly_what_the_stages_compute(models, hd_dir, tmp_path):
    """The stages' path for one clip (crop_faces -> JPEG strip -> embed -> float16; extract_audio -> wav ->
    fixed window -> log-mel -> float16) gives the very tensors predict feeds the model."""
    video, model = hd_dir / CLIP, models["fusion_concat"]
    faces, audio = model.prep["faces"], model.prep["audio"]
    save_strip(crop_faces(video, faces).crops, tmp_path / "strip.jpg")
    crops = load_strip(tmp_path / "strip.jpg", faces["n_frames"])
    expected_video = embed(model.backbone(), bgr_to_tensor(crops)).astype(np.float16)
    rate = audio["sample_rate"]
    assert extract_audio(video, tmp_path / "a.wav", rate).status == "ok"
    window = fix_length(load_wav(tmp_path / "a.wav", rate), int(audio["duration_s"] * rate),
                        int(audio["offset_s"] * rate))
    expected_logmel = LogMel(rate, audio["n_mels"], audio["n_fft"], audio["hop_ms"])(window).astype(np.float16)
    inputs = predict_clip(video, model).inputs
    assert np.array_equal(inputs["video"], expected_video.astype(np.float32))
    assert np.array_equal(inputs["logmel"], expected_logmel.astype(np.float32))


def test_a_non_ravdess_video_without_audio_works_with_a_video_model_only(models, made, models_dir):
    video = made["no_audio"]
    result = predict_clip(video, models["video_lstm"]).as_dict()
    check_probabilities(result)
    assert result["face"]["frame_size"] == [400, 400] and result["face"]["detection_rate"] >= 0.75
    for name in ("logmel_cnn", "fusion_concat"):
        with pytest.raises(StageError, match="has no audio stream") as err:
            predict_clip(video, models[name], models_dir=models_dir)
        assert str(video) in str(err.value) and "video_lstm" in str(err.value)


def test_no_face_is_reported_and_audio_fallback_is_used_when_asked(models, made, models_dir):
    video = made["no_face"]
    with pytest.raises(StageError, match="no face found in any of the 16 sampled frames") as err:
        predict_clip(video, models["video_lstm"], models_dir=models_dir)
    assert str(video) in str(err.value) and "--audio-fallback logmel_cnn" in str(err.value)
    result = predict_clip(video, models["fusion_concat"], fallback=models["logmel_cnn"]).as_dict()
    check_probabilities(result)
    assert result["fallback"] and result["used_model"] == "logmel_cnn" and "no face" in result["notes"][0]


def test_audio_only_input_needs_an_audio_model(models, made, models_dir):
    with pytest.raises(StageError, match=r"has no video stream \(audio only\)") as err:
        predict_clip(made["wav"], models["video_lstm"], models_dir=models_dir)
    assert str(made["wav"]) in str(err.value)
    check_probabilities(predict_clip(made["wav"], models["logmel_cnn"]).as_dict())


def test_the_silent_track_of_a_video_only_ravdess_file_is_refused_by_an_audio_model(models, hd_dir, models_dir):
    video = hd_dir / "02-01-01-01-01-01-01.mp4"
    with pytest.raises(StageError, match=r"audio is silent \(RMS -\d+") as err:
        predict_clip(video, models["logmel_cnn"], models_dir=models_dir)
    assert str(video) in str(err.value)


def test_missing_model_unreadable_checkpoint_and_unreadable_video(models_dir, models, hd_dir, tmp_path):
    with pytest.raises(StageError, match="model 'nope' not found") as err:
        resolve_model("nope", models_dir)
    assert "available models" in str(err.value) and all(m in str(err.value) for m in MODELS)
    assert resolve_model("video_lstm", models_dir) == models_dir / "video_lstm.pt"
    garbage = tmp_path / "broken.pt"
    garbage.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(StageError, match="not a readable model checkpoint") as err:
        load_predictor(garbage, models_dir)
    assert str(garbage) in str(err.value)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((hd_dir / CLIP).read_bytes()[:4000])
    for name in ("video_lstm", "logmel_cnn"):
        with pytest.raises(StageError, match="cut.mp4"):
            predict_clip(truncated, models[name], models_dir=models_dir)
    with pytest.raises(StageError, match="input file not found"):
        predict_clip(tmp_path / "absent.mp4", models["video_lstm"])


def test_preprocessing_comes_from_the_checkpoint_else_params_yaml(models_dir, tmp_path):
    checkpoint = torch.load(models_dir / "fusion_concat.pt", map_location="cpu", weights_only=False)
    checkpoint["feature_info"].pop("preprocessing", None)
    prep, source = preprocessing_of(checkpoint, ROOT / "params.yaml")
    assert source.endswith("params.yaml") and prep["faces"]["n_frames"] == 16 and prep["audio"]["n_mels"] == 64
    assert prep["features"] == {"backbone": "mobilenet_v2", "weights": "IMAGENET1K_V1"}
    recorded = {"faces": {**prep["faces"], "n_frames": 8}, "audio": prep["audio"], "features": prep["features"]}
    checkpoint["feature_info"]["preprocessing"] = recorded
    prep, source = preprocessing_of(checkpoint, tmp_path / "absent.yaml")  # never read: the checkpoint has it
    assert source == "checkpoint" and prep["faces"]["n_frames"] == 8
    with pytest.raises(StageError, match=r"video \(16, 1280\) but the preprocessing gives \(8,\) \(faces.n_frames=8\)"):
        check_shapes(models_dir / "fusion_concat.pt", checkpoint["shapes"], prep, source)
    checkpoint["feature_info"].pop("preprocessing")
    with pytest.raises(ParamError, match="absent.yaml"):
        preprocessing_of(checkpoint, tmp_path / "absent.yaml")


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


def test_sliding_windows_over_a_long_video_give_a_timeline_and_per_frame_rows(models, made, tmp_path):
    seen = []
    result = run_stream(made["long"], models["video_lstm"], window_s=3.0, hop_s=0.75, on_window=seen.append)
    assert 190 <= result.frames <= 200 and result.frame_size == (1280, 720)
    assert len(result.windows) == 5 and seen == result.windows
    assert [round(w.start_s, 2) for w in result.windows] == [0.0, 0.75, 1.5, 2.25, 3.0]
    assert all(w.status == "ok" and w.face_rate >= 0.75 for w in result.windows)
    rows = frame_rows(result)
    assert len(rows) == result.frames and rows[0]["window"] == 0 and rows[-1]["window"] == 4
    out = summary(result, rows, "vote")
    check_probabilities(out)
    assert sum(out["stream"]["votes"].values()) == result.frames
    assert out["stream"]["fps_processed"] > 0 and len(out["timeline"]) == 5


def test_live_reading_through_a_pipe_gives_the_same_windows_as_the_file(models, made):
    model = models["logmel_cnn"]  # audio only: no face detection, so this mostly exercises decoding and queues
    from_file = run_stream(made["long"], model, window_s=3.0, hop_s=1.5)
    live = run_stream(made["long"], model, window_s=3.0, hop_s=1.5, live=True)
    assert len(live.windows) == len(from_file.windows) == 3 and live.dropped == 0
    for a, b in zip(live.windows, from_file.windows):
        assert a.index == b.index and np.allclose(a.probs, b.probs, atol=5e-3)  # the pipe skips the 16-bit WAV


def test_stream_without_a_face_says_so_or_uses_the_audio_fallback_per_window(made, models_dir, capsys):
    args = [str(made["no_face"]), "--models-dir", str(models_dir), "--model", "video_lstm", "--mode", "stream",
            "--window", "1.0", "--hop", "0.5"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert f"{made['no_face']}: no window could be predicted (no_face)" in err and "--audio-fallback" in err
    main(args + ["--audio-fallback", "logmel_cnn"])
    out = capsys.readouterr().out
    assert "(audio)" in out and "fallback: predicted with 'logmel_cnn'" in out and "prediction: " in out
    assert "stream: 63 frames in 4 windows of 1.0 s every 0.5 s" in out  # 2.5 s at 25 fps


@pytest.mark.parametrize("architecture, args", [("wave_cnn", {"context_s": 0.5}),
                                                 ("video3d", {"backbone": "plain3d", "channels": [8, 16]})])
def test_models_on_raw_face_crops_or_waveforms_get_them_as_the_stages_store_them(architecture, args, made, hd_dir,
                                                                               tmp_path):
    if architecture not in ARCHITECTURES:
        pytest.skip(f"architecture {architecture} not in this version of avemo.models")
    untrained_checkpoint(tmp_path / "raw.pt", "raw", architecture, args)
    model = load_predictor(tmp_path / "raw.pt", tmp_path)
    result = predict_clip(hd_dir / CLIP, model)
    check_probabilities(result.as_dict())
    name = "wave" if architecture == "wave_cnn" else "frames"
    assert result.inputs[name].shape == model.checkpoint["shapes"][name]
    assert result.inputs[name].dtype == (np.uint8 if name == "frames" else np.float32)
    if name == "frames":  # and per window in stream mode
        stream = run_stream(made["no_audio"], model, window_s=3.0, hop_s=1.5)
        assert [w.status for w in stream.windows] == ["ok"]


def test_annotated_video_without_audio_keeps_size_and_frame_count(models, made, tmp_path):
    video, out = made["no_audio"], tmp_path / "annotated.mp4"
    result = predict_clip(video, models["video_lstm"])
    n = count_frames(video)
    labels, boxes = clip_annotations(result, n)
    info = annotate_video(video, out, labels, boxes, result.classes)
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == n == info["frames"]
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (400, 400)
    assert decode_audio(out, 16000) is None and not list(tmp_path.glob(".tmp-*"))


def test_cli_json_timeline_and_annotated_720p_video_with_audio(hd_dir, models_dir, tmp_path):
    video, out = hd_dir / CLIP, tmp_path / "annotated.mp4"
    proc = subprocess.run([sys.executable, "-m", "avemo.predict", str(video), "--model", "video_lstm",
                           "--models-dir", str(models_dir), "--mode", "stream", "--json", "--annotate", str(out),
                           "--timeline", str(tmp_path / "t.csv"), "--per-frame", str(tmp_path / "f.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
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
    assert {"start_s", "end_s", "label", "confidence"} | {f"p_{e}" for e in EMOTIONS} <= set(timeline[0])
    assert len(json.loads((tmp_path / "f.json").read_text())) == n


def test_cli_errors_exit_1_with_one_line_and_no_traceback(models_dir, made, capsys):
    proc = subprocess.run([sys.executable, "-m", "avemo.predict", str(made["no_audio"]), "--model", "nope",
                           "--models-dir", str(models_dir)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: model 'nope' not found") and "video_lstm" in proc.stderr
    for args, expected in [(["--model", "logmel_cnn"], "has no audio stream"),
                           (["--model", "video_lstm", "--audio-fallback", "video_lstm"], "must use audio only")]:
        with pytest.raises(SystemExit) as exit_:
            main([str(made["no_audio"]), "--models-dir", str(models_dir), *args])
        assert exit_.value.code == 1 and expected in capsys.readouterr().err


def test_the_avemo_console_script_predicts_from_any_directory(hd_dir, models_dir, tmp_path):
    """`avemo predict VIDEO --model PATH` run from a directory that is not the project: the installed command,
    a checkpoint by path, and (for a checkpoint without recorded preprocessing) the installed repository's
    params.yaml."""
    avemo = Path(sys.executable).with_name("avemo")
    if not avemo.exists():
        pytest.skip(f"{avemo}: the avemo console script is not installed (pip install -e .)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    video = hd_dir / CLIP
    env = {k: v for k, v in os.environ.items() if k != "AVEMO_MODELS"}
    proc = subprocess.run([str(avemo), "predict", str(video), "--model", str(models_dir / "fusion_concat.pt"),
                           "--json"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    check_probabilities(result)
    assert result["input"] == str(video) and result["mode"] == "clip" and result["model"] == "fusion_concat"
    assert result["face"]["frame_size"] == [1280, 720] and result["audio"]["status"] == "ok"
    assert result["preprocessing_from"] in ("checkpoint", str(INSTALL_ROOT / "params.yaml"))
    assert list(elsewhere.iterdir()) == []  # nothing written where it ran


def test_models_and_params_default_to_avemo_models_then_the_project_here_then_the_installed_repository(
        monkeypatch, tmp_path):
    monkeypatch.delenv("AVEMO_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)  # not a project
    assert INSTALL_ROOT == ROOT and default_models_dir() == ROOT / "models"
    assert default_params() == ROOT / "params.yaml"
    (tmp_path / "models").mkdir()
    assert default_models_dir() == ROOT / "models"  # models/ without dvc.yaml is not a project
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert default_models_dir() == Path.cwd() / "models" and default_params() == Path.cwd() / "params.yaml"
    with pytest.raises(StageError, match=re.escape(f"available models in {Path.cwd() / 'models'}: none")):
        resolve_model("fusion_concat")
    monkeypatch.setenv("AVEMO_MODELS", str(tmp_path / "elsewhere"))
    assert default_models_dir() == tmp_path / "elsewhere" and default_params() == Path.cwd() / "params.yaml"


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
