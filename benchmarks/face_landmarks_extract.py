"""MediaPipe face-mesh landmarks (468 points) of every face crop of the faces stage's strips.

Runs in a separate virtual environment, NOT the project's: mediapipe 0.10.21 (the last wheel that ships its
face_landmark.tflite and the legacy `solutions.face_mesh`) pins numpy < 2, which the project's environment
does not allow. Standalone on purpose (numpy, OpenCV and mediapipe only):

    python -m venv /work/scratch/face/mpvenv && /work/scratch/face/mpvenv/bin/pip install mediapipe==0.10.21
    OMP_NUM_THREADS=1 nice -n 10 /work/scratch/face/mpvenv/bin/python benchmarks/face_landmarks_extract.py \
        --strips data/faces/strips --out /work/scratch/face/landmarks_points.npz

Writes `clips` (sorted strip names), `points` (clips x frames x 468 x 3, float16: x, y in crop widths, z in
MediaPipe's relative depth), `found` (clips x frames, bool: a face mesh was found) and `seconds_per_frame`
(one thread). A frame without a mesh in the crop as it is is tried once more with a 32-pixel black border
(the face detector misses some faces that fill the whole crop); still none: `found` false, points zero.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

N_POINTS = 468
RETRY_BORDER = 32


def strip_frames(path: Path, n_frames: int) -> list[np.ndarray]:
    strip = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if strip is None:
        raise SystemExit(f"{path}: unreadable face strip")
    return np.split(strip, n_frames, axis=1)


def mesh_points(mesh, crop: np.ndarray) -> np.ndarray | None:
    """(468, 3) landmarks in units of the crop's width, or None."""
    for border in (0, RETRY_BORDER):
        image = cv2.copyMakeBorder(crop, border, border, border, border, cv2.BORDER_CONSTANT) if border else crop
        found = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).multi_face_landmarks
        if found:
            scale = image.shape[1] / crop.shape[1]
            points = np.array([(p.x, p.y, p.z) for p in found[0].landmark[:N_POINTS]], dtype=np.float32)
            points[:, :2] = points[:, :2] * scale - border / crop.shape[1]
            points[:, 2] *= scale
            return points
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strips", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    import mediapipe as mp

    paths = sorted(args.strips.glob("*.jpg"))
    points = np.zeros((len(paths), args.frames, N_POINTS, 3), dtype=np.float16)
    found = np.zeros((len(paths), args.frames), dtype=bool)
    started, busy = time.time(), 0.0
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                         min_detection_confidence=0.3) as mesh:
        for i, path in enumerate(paths):
            for j, crop in enumerate(strip_frames(path, args.frames)):
                t0 = time.perf_counter()
                found_points = mesh_points(mesh, crop)
                busy += time.perf_counter() - t0
                if found_points is not None:
                    points[i, j], found[i, j] = found_points, True
            if i % 200 == 0:
                print(f"[{time.time() - started:5.0f} s] {i}/{len(paths)} clips, {(~found[:i + 1]).sum()} frames without mesh",
                      flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, clips=np.array([p.stem for p in paths]), points=points, found=found,
                        seconds_per_frame=busy / found.size)
    tmp.replace(args.out)
    print(f"{len(paths)} clips, {found.size} frames, {(~found).sum()} without mesh, "
          f"{1000 * busy / found.size:.1f} ms a frame on one thread; written {args.out}")


if __name__ == "__main__":
    main()
