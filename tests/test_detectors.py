"""Face detectors, sampled decoding and worker processes of the faces stage, on real clips."""
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from avemo.errors import ParamError, StageError
from avemo.faces import mtcnn
from avemo.faces.crop import aligned_crop, eye_angle, square_crop
from avemo.faces.decode import METHODS, read_samples
from avemo.faces.crop_clips import check_config, run
from avemo.faces.track import iou
from avemo.metadata import write_metadata
from avemo.faces.clip import crop_faces
from avemo.faces.detect import detect_face, detect_largest_face

MTCNN = {"detector": "mtcnn", "min_face": 0.15, "detect_size": 480}
HAAR = {"detector": "haar", "min_face": 0.15, "scale_factor": 1.1, "min_neighbors": 5}
STAGE = {"n_frames": 6, "crop_px": 48, "margin": 0.2, "detector": "mtcnn", "detect_size": 320, "min_face": 0.15,
         "track_step": 3, "track_iou": 0.7, "align": False}


@pytest.fixture(scope="module")
def lite_clips(tmp_path_factory, lite_dir) -> list[Path]:
    """Four real ravdess-lite clips of actor 02 (400x224)."""
    where = tmp_path_factory.mktemp("lite")
    with zipfile.ZipFile(lite_dir / "Video_Speech_Actor_02.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".mp4") and "/01-" in n)[:4]
        for name in names:
            (where / Path(name).name).write_bytes(archive.read(name))
    return sorted(where.glob("*.mp4"))


def middle_frame(video: Path) -> np.ndarray:
    samples = read_samples(video, 3)
    return samples.frames[1]


def check_face(frame: np.ndarray) -> None:
    box, marks = detect_face(frame, MTCNN)
    assert box is not None and marks is not None and len(marks) == 5
    x, y, w, h = box
    for px, py in marks:  # eyes, nose, mouth corners inside the face box
        assert x <= px <= x + w and y <= py <= y + h
    (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = marks
    assert lx < rx and mlx < mrx and max(ly, ry) < min(mly, mry)  # left eye left of right, eyes above mouth
    haar = detect_largest_face(frame, 1.1, 5, 0.15)
    assert haar is not None and iou(box, haar) > 0.5, (box, haar)


def test_mtcnn_finds_the_face_and_landmarks_on_a_720p_original(hd_dir):
    frame = middle_frame(sorted(hd_dir.glob("01-*.mp4"))[0])
    assert frame.shape == (720, 1280, 3)
    check_face(frame)


def test_mtcnn_finds_the_face_and_landmarks_on_a_ravdess_lite_clip(lite_clips):
    frame = middle_frame(lite_clips[0])
    assert frame.shape == (224, 400, 3)
    check_face(frame)


def test_frame_without_a_face_gives_none(hd_dir):
    frame = middle_frame(sorted(hd_dir.glob("01-*.mp4"))[0])
    background = np.ascontiguousarray(frame[:, :360])  # the studio wall left of the actor
    assert detect_face(background, MTCNN) == (None, None)
    noise = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    assert detect_face(noise, MTCNN) == (None, None)
    assert detect_face(noise, HAAR) == (None, None)


def test_missing_weights_end_in_one_line_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(mtcnn, "URL", "http://127.0.0.1:9/{}.pt")  # nothing listens there: no download
    with pytest.raises(StageError) as caught:
        mtcnn.weight_paths()
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / "mtcnn_pnet.pt") in message
    assert "offline-weights.sh" in message


def test_invalid_detector_names_the_valid_ones():
    with pytest.raises(ParamError, match=r"faces.detector: 'dlib' is not valid; choose one of: mtcnn, haar"):
        check_config({**STAGE, "detector": "dlib"})
    with pytest.raises(ParamError, match="faces.detector"):
        detect_face(np.zeros((64, 64, 3), np.uint8), {**MTCNN, "detector": "dlib"})


@pytest.mark.parametrize("which", ["hd", "lite"])
def test_sampled_decoding_gives_the_frames_of_decoding_everything(which, hd_dir, lite_clips):
    video = sorted(hd_dir.glob("01-*.mp4"))[0] if which == "hd" else lite_clips[1]
    sampled, everything = read_samples(video, 16), METHODS["all"](video, 16)
    assert sampled.indices == everything.indices and len(sampled.indices) == 16
    assert sampled.decoded < 0.8 * everything.decoded  # non-reference frames were skipped
    for a, b in zip(sampled.frames, everything.frames):
        assert np.array_equal(a, b)  # pixel-identical
    opencv = METHODS["opencv"](video, 16)  # the former decoder: the same libavcodec frames, same conversion
    assert opencv.indices == sampled.indices
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(sampled.frames, opencv.frames)) <= 2


def test_aligned_crop_levels_the_eyes(lite_clips):
    import cv2

    frame = middle_frame(lite_clips[2])
    box, _ = detect_face(frame, MTCNN)
    centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
    tilted = cv2.warpAffine(frame, cv2.getRotationMatrix2D(centre, 20, 1.0), frame.shape[1::-1],
                            borderMode=cv2.BORDER_REPLICATE)  # the head turned 20 degrees
    box, marks = detect_face(tilted, MTCNN)
    assert box is not None and 12 < abs(eye_angle(marks)) < 28
    plain, aligned = square_crop(tilted, box, 0.2, 112), aligned_crop(tilted, box, marks, 0.2, 112)
    (_, in_plain), (_, in_aligned) = detect_face(plain, MTCNN), detect_face(aligned, MTCNN)
    assert abs(eye_angle(in_plain)) > 12 and abs(eye_angle(in_aligned)) < 5  # the eyes are level again


def test_tracking_detects_fewer_frames_and_follows_a_head_turn(lite_dir, tmp_path):
    name = "01-01-05-02-01-02-01.mp4"  # the actor turns his head away and back within 1 s (frames 1-3)
    with zipfile.ZipFile(lite_dir / "Video_Speech_Actor_01.zip") as archive:
        (tmp_path / name).write_bytes(archive.read(f"Actor_01/{name}"))
    every = crop_faces(tmp_path / name, {**STAGE, "n_frames": 16, "track_step": 1})
    tracked = crop_faces(tmp_path / name, {**STAGE, "n_frames": 16, "track_step": 4})
    assert every.info["detector_frames"] == 16 and tracked.info["detector_frames"] < 12
    assert any(tracked.tracked) and not any(every.tracked)
    assert not any(tracked.tracked[1:4])  # O-Net did not confirm the interpolated boxes there: detected in full
    assert all(iou(a, b) > 0.7 for a, b in zip(every.boxes, tracked.boxes))
    assert all(marks is not None for marks in tracked.landmarks)


def test_config_without_detector_key_is_haar_without_landmarks(lite_clips):
    legacy = {k: v for k, v in STAGE.items() if k not in ("detector", "track_step", "track_iou", "align")}
    track = crop_faces(lite_clips[0], {**legacy, "scale_factor": 1.1, "min_neighbors": 5})
    assert track.detection_rate > 0.5 and track.landmarks == [None] * 6


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_two_workers_write_byte_identical_outputs(lite_clips, tmp_path):
    raw = tmp_path / "raw"
    (raw / "clips").mkdir(parents=True)
    for clip in lite_clips:
        (raw / "clips" / clip.name).write_bytes(clip.read_bytes())
    write_metadata(raw / "clips", raw / "metadata.csv")
    for workers in (1, 2):
        report = run({**STAGE, "workers": workers}, raw, tmp_path / f"out{workers}", tmp_path / f"cache{workers}")
        assert report["clips"] == 4 and report["mean_detection_rate"] == 1.0
    assert snapshot(tmp_path / "out1") == snapshot(tmp_path / "out2")
    assert len(snapshot(tmp_path / "cache2" / "faces")) == 2 * 4  # each worker's entries reached the cache
