"""`avemo predict` on the awkward files of real life: phone videos stored sideways with rotation metadata,
clips shorter than the audio window, truncated files, a full disk under the outputs, an hour of live
audio. Real files made by ffmpeg from the 720p RAVDESS clips, real tiny models (conftest.trained_models),
a real full file system (a tmpfs mounted in a private mount namespace)."""
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from avemo.audio import load_wav
from avemo.predict import load_predictor, predict_clip, run_stream
from avemo.predict.annotate import annotate_video, clip_annotations, count_frames
from avemo.predict.inputs import clip_audio, window_start_s
from avemo.predict import sources
from avemo.predict.sources import AudioFeed
from avemo.preprocess import audio_window
from avemo.faces.clip import crop_faces

from conftest import venv_env

CLIP = "01-01-08-02-02-02-01.mp4"  # surprised, strong, actor 01, 1280x720 with speech

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(trained_models):
    return {name: load_predictor(name, trained_models) for name in ("fer_linear", "whisper_linear", "av_late_fusion")}


@pytest.fixture(scope="module")
def files(tmp_path_factory, hd_dir, ffmpeg):
    """upright: the clip re-encoded losslessly; rotated: the same picture stored turned 90 degrees clockwise
    with display metadata turning it back (as phones write); sideways: that picture without the metadata;
    short: 0.3 s of the clip; long: the clip three times (9.8 s); cut: the first 60 % of the bytes of a faststart copy."""
    out = tmp_path_factory.mktemp("real-files")
    made = {name: out / f"{name}.mp4" for name in ("upright", "side", "rotated", "short", "long", "fast", "cut")}
    lossless = ("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-c:a", "copy")
    ffmpeg("-i", hd_dir / CLIP, *lossless, made["upright"])
    ffmpeg("-i", hd_dir / CLIP, "-vf", "transpose=1", *lossless, made["side"])
    ffmpeg("-display_rotation", "90", "-i", made["side"], "-c", "copy", made["rotated"])
    ffmpeg("-ss", "1.2", "-t", "0.3", "-i", hd_dir / CLIP, made["short"])
    ffmpeg("-stream_loop", "2", "-i", hd_dir / CLIP, "-c", "copy", made["long"])
    ffmpeg("-i", hd_dir / CLIP, "-c", "copy", "-movflags", "+faststart", made["fast"])
    data = made["fast"].read_bytes()
    made["cut"].write_bytes(data[:int(len(data) * 0.6)])
    return made


@pytest.mark.slow
def test_a_rotated_file_gets_the_upright_files_answer(models, files, tmp_path):
    model = models["av_late_fusion"]
    upright, rotated = predict_clip(files["upright"], model), predict_clip(files["rotated"], model)
    assert rotated.face["frame_size"] == upright.face["frame_size"] == [1280, 720]
    assert np.array_equal(rotated.probs, upright.probs)  # the same pixels after turning: the same answer
    assert rotated.detections == upright.detections and rotated.face["detected"] > 0
    sideways = predict_clip(files["side"], model)  # without the metadata the face lies on its side
    assert sideways.face["frame_size"] == [720, 1280] and not np.array_equal(sideways.probs, upright.probs)
    # stream mode reads frames with OpenCV, which turns them the same way
    a, b = run_stream(files["upright"], model, hop_s=1.5), run_stream(files["rotated"], model, hop_s=1.5)
    assert b.frame_size == a.frame_size and [w.label for w in a.windows] == [w.label for w in b.windows]
    # --annotate draws the upright picture with the box on the face
    labels, boxes = clip_annotations(rotated, count_frames(files["rotated"]))
    out = annotate_video(files["rotated"], tmp_path / "annotated.mp4", labels, boxes, rotated.classes)
    assert out["size"] == [1280, 720]
    track = crop_faces(Path(out["path"]), {**model.faces, "n_frames": 4})
    assert all(track.detected)


def test_a_clip_shorter_than_the_audio_window_is_placed_in_its_sound_and_gets_a_note(models, files):
    model = models["whisper_linear"]
    result = predict_clip(files["short"], model).as_dict()
    assert result["audio"]["window_start_s"] == 0.0 and result["audio"]["padding_s"] == pytest.approx(2.7, abs=0.03)
    assert any("padding (silence)" in note and "short.mp4" in note for note in result["notes"])
    long = predict_clip(files["upright"], model).as_dict()
    assert long["audio"]["window_start_s"] == 0.5 and not any("padding" in n for n in long["notes"])


def test_ravdess_clips_keep_the_pipelines_audio_window_byte_for_byte(sample_data):
    """The placement rule changes nothing for the data the models were trained on."""
    cfg = {"sample_rate": 16000, "offset_s": 0.5, "duration_s": 3.0}
    wavs = sorted((sample_data.root / "data" / "audio").rglob("*.wav"))
    assert len(wavs) >= 50
    for wav in wavs:
        samples = load_wav(wav, cfg["sample_rate"])
        placed, placement = clip_audio(samples, cfg)
        assert placement["window_start_s"] == 0.5
        assert audio_window(samples, placed).tobytes() == audio_window(samples, cfg).tobytes()
    assert window_start_s(int(0.3 * 16000), cfg) == 0.0 and window_start_s(int(1.9 * 16000), cfg) == 0.0
    assert window_start_s(int(2.0 * 16000), cfg) == 0.5


def test_a_truncated_file_is_reported_with_its_decoded_and_declared_duration(models, files):
    result = predict_clip(files["cut"], models["av_late_fusion"]).as_dict()
    notes = [n for n in result["notes"] if "truncated" in n]
    assert len(notes) == 1 and "cut.mp4" in notes[0] and "of 98 frames" in notes[0] and "3.27 s" in notes[0]
    assert not any("truncated" in n for n in predict_clip(files["fast"], models["av_late_fusion"]).notes)


def full_disk_run(where: Path, *predict_args) -> subprocess.CompletedProcess:
    """`avemo predict ...` with `where` a small tmpfs, filled up, in a private mount namespace (needs root)."""
    where.mkdir()
    command = (f'mount -t tmpfs -o size=256k tmpfs "{where}" && {{ cat /dev/zero > "{where}/filler" 2>/dev/null; '
               'exec "$0" "$@"; }')
    return subprocess.run(["unshare", "-m", "sh", "-c", command, str(Path(sys.executable).parent / "avemo"),
                           "predict", *map(str, predict_args)], capture_output=True, text=True, env=venv_env(),
                          timeout=600)


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory):
    where = tmp_path_factory.mktemp("mount-check")
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{where}"'],
            capture_output=True).returncode != 0:
        pytest.skip("a tmpfs cannot be mounted here (needs root and unshare)")


@pytest.mark.slow
@pytest.mark.parametrize("option,name", [("--annotate", "a.mp4"), ("--timeline", "t.csv"), ("--per-frame", "f.json"),
                                         ("--output", "rows.csv")])
def test_a_full_disk_is_reported_as_such_naming_the_file(can_mount, trained_models, hd_dir, tmp_path, option, name):
    full = tmp_path / "full"
    inputs = [hd_dir / CLIP] + ([hd_dir / "01-01-01-01-01-01-01.mp4"] if option == "--output" else [])
    run = full_disk_run(full, *inputs, "--model", "fer_linear", "--models-dir", trained_models,
                        option, full / name, *(["--hop", "0.1875"] if option == "--per-frame" else []))
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 1 and last.startswith(f"error: {full / name}: ")
    assert "no space left on device" in last.lower(), run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "Conversion failed" not in run.stderr


@pytest.mark.slow
def test_the_live_audio_buffer_holds_a_few_seconds_over_an_hour_of_input(models, files, monkeypatch):
    """Discarding what no later window needs changes no window of a real live pipe (a file piped faster
    than real time, so held whole at first); then an hour of 16 kHz input arriving in pipe-sized chunks,
    windows read and discarded as stream mode does: the feed holds one window and a chunk."""
    model = models["whisper_linear"]
    live, from_file = run_stream(files["long"], model, live=True), run_stream(files["long"], model)
    assert live.audio["seconds"] > 9.5 and len(live.windows) == len(from_file.windows) >= 15
    for a, b in zip(live.windows, from_file.windows):
        assert a.index == b.index and np.allclose(a.probs, b.probs, atol=2e-2)  # the pipe skips the 16-bit WAV
    monkeypatch.setattr(sources, "MAX_HELD_S", 4.0)  # the file is piped faster than real time: the pipe waits
    bounded = run_stream(files["long"], model, live=True)
    assert bounded.audio["peak_held_s"] <= 4.0 + 16384 / 4 / 16000 < live.audio["peak_held_s"]
    assert [w.index for w in bounded.windows] == [w.index for w in live.windows]
    assert all(np.allclose(a.probs, b.probs, atol=1e-6) for a, b in zip(bounded.windows, live.windows))
    rate, hop, window = 16000, int(0.375 * 16000), 3 * 16000
    feed, chunk, next_window, peak = AudioFeed(rate, "pending"), np.zeros(4096, np.float32), 0, 0
    for _ in range(3600 * rate // len(chunk)):
        feed.append(chunk)
        while feed.available() >= next_window + window:
            assert len(feed.span(next_window, next_window + window)) == window
            next_window += hop
            feed.discard_before(next_window)
        peak = max(peak, feed.held())
    assert feed.available() == 3600 * rate // len(chunk) * len(chunk)
    assert feed.peak_held <= window + hop + len(chunk)  # 3.3 s: 0.2 MiB of float32 instead of 230 MB


def test_stream_mode_draws_the_timeline_next_to_its_csv(trained_models, files, tmp_path, capsys):
    from avemo.predict.cli import main

    timeline = tmp_path / "talk.timeline.csv"
    main([str(files["long"]), "--model", "fer_linear", "--models-dir", str(trained_models), "--timeline",
          str(timeline), "--plot", "--hop", "0.75"])
    picture = cv2.imread(str(timeline.with_suffix(".png")))
    assert picture is not None and picture.shape[1] > 800 and picture.shape[0] > 400
    assert f"plot: {timeline.with_suffix('.png')}" in capsys.readouterr().out
    assert picture.std() > 10  # lines and bands, not an empty canvas
