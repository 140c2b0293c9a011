import numpy as np
import pytest

from avemo.faces.clip import crop_faces
from avemo.faces.sampling import sample_indices
from avemo.faces.strip import load_strip, save_strip
from avemo.faces.track import fill_missing_boxes

CFG = {"n_frames": 8, "crop_px": 112, "margin": 0.2, "scale_factor": 1.1, "min_neighbors": 5, "min_face": 0.15}
MTCNN = {**CFG, "detector": "mtcnn", "detect_size": 480, "track_step": 4, "track_iou": 0.7}


def test_sample_indices_are_evenly_spread():
    assert sample_indices(100, 4) == [12, 37, 62, 87]
    assert sample_indices(3, 5) == [0, 0, 1, 2, 2]
    assert sample_indices(0, 4) == []


def test_missing_boxes_take_the_nearest_detection():
    a, b = (1, 1, 10, 10), (5, 5, 10, 10)
    assert fill_missing_boxes([None, a, None, None, b, None]) == [a, a, a, b, b, b]
    assert fill_missing_boxes([None, None]) == [None, None]


@pytest.mark.parametrize("cfg", [CFG, MTCNN], ids=["haar-no-detector-key", "mtcnn"])
def test_faces_are_found_and_cropped_on_the_real_720p_files(hd_dir, tmp_path, cfg):
    for video in sorted(hd_dir.glob("*.mp4"))[:3]:
        track = crop_faces(video, cfg)
        assert track.frame_size == (1280, 720)
        assert track.crops.shape == (8, 112, 112, 3) and track.crops.dtype == np.uint8
        assert track.detection_rate >= 0.75, (video, track.detected)
        x, y, w, h = next(b for b in track.boxes if b is not None)
        assert 150 < w < 600 and 300 < x + w / 2 < 980  # one face, roughly centred, not the whole frame
        assert all(m is None for m in track.landmarks) if cfg is CFG else all(len(m) == 5 for m in track.landmarks)
        save_strip(track.crops, tmp_path / "s.jpg")
        restored = load_strip(tmp_path / "s.jpg", 8)
        assert restored.shape == track.crops.shape
        assert np.abs(restored.astype(int) - track.crops).mean() < 6


@pytest.mark.parametrize("cfg", [CFG, MTCNN], ids=["haar", "mtcnn"])
def test_video_without_a_face_falls_back_to_centre_crops(ffmpeg, tmp_path, cfg):
    video = tmp_path / "01-01-03-01-01-01-01.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "1", "-pix_fmt", "yuv420p", video)
    track = crop_faces(video, cfg)
    assert track.detection_rate == 0 and track.boxes == [None] * 8
    assert track.crops.shape == (8, 112, 112, 3)


def test_stream_windows_crop_by_the_faces_stage_path_with_align_and_tracking(hd_dir, monkeypatch):
    """Stream mode finds and crops the faces of its sampled frames as the faces stage does a clip's, the
    stream being the clip (detector, tracking every 4th point, eyes levelled); overlapping windows share the
    crops of the frames they share, and no frame is detected in full twice."""
    from types import SimpleNamespace

    import cv2

    import avemo.predict.window as window_module
    from avemo.faces.clip import crop_frames
    from avemo.faces.detect import detect_faces
    from avemo.predict.window import WindowPredictor, make_grid

    in_full = []  # every frame the stream detects in full

    def counted(batch, config):
        in_full.extend(id(f) for f in batch)
        return detect_faces(batch, config)

    monkeypatch.setattr(window_module, "detect_faces", counted)
    cfg = {**MTCNN, "n_frames": 8, "align": True}
    capture = cv2.VideoCapture(str(sorted(hd_dir.glob("*.mp4"))[0]))
    frames = []
    while len(frames) < 60:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    grid = make_grid(30.0, 1.0, 0.5, cfg["n_frames"])  # 30-frame windows every 15 frames: half of them shared
    state = WindowPredictor(SimpleNamespace(faces=cfg), grid, None, None, detect=True)
    points = [j for j in range(grid.points(1)[-1] + 1)]
    for j in points:
        if j == 0 or grid.frame(j) != grid.frame(j - 1):
            state.add_frame(grid.frame(j), frames[grid.frame(j)])
    state.tracker.track(lambda j: state.points[j].frame, state.next_j, final=True)  # the stream ends here
    whole = crop_frames([frames[grid.frame(j)] for j in points], cfg)  # the faces stage on the stream as a clip
    windows = {k: state.window_faces(list(grid.points(k))) for k in (0, 1)}
    for k, window in windows.items():
        js = list(grid.points(k))
        assert np.array_equal(window.crops, whole.crops[js]) and window.boxes == [whole.boxes[j] for j in js]
        assert all(window.detected)
    shared = sorted(set(grid.points(0)) & set(grid.points(1)))
    assert shared and all(np.array_equal(windows[0].crops[list(grid.points(0)).index(j)],
                                         windows[1].crops[list(grid.points(1)).index(j)]) for j in shared)
    assert any(m is not None for m in whole.landmarks)  # aligned by landmarks, not plain square crops
    plain = crop_frames([frames[grid.frame(j)] for j in points], {**cfg, "align": False})
    assert not np.array_equal(plain.crops, whole.crops)
    assert len(in_full) == len(set(in_full)) < len(points)  # tracked: fewer full detections than points
