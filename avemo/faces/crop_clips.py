"""The faces stage: per clip, N sampled frames, the largest face of each, square crops stored as one
JPEG strip with boxes, landmarks and detection flags in tracks.json; clips in worker processes
(`faces.workers`), each looked up first in the content-addressed per-clip cache (avemo/cache.py).

A clip that cannot be decoded is reported by name and the others go on; the output folder is written
to a temporary name and renamed when complete; the first write failure (full disk) stops the stage
and leaves the previous output as it was."""
from __future__ import annotations

import numbers
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from ..cache import ClipCache
from ..errors import ParamError, StageError, VideoError
from ..io import as_final, atomic_path, remove_stale_temporaries
from ..metadata import read_metadata
from ..parallel import map_clips, resolve_workers
from ..entry import write_final_json
from .clip import crop_faces
from .detect import detector_name, prepare
from .strip import save_strip

HERE = Path(__file__).resolve().parent
CODE = sorted(HERE.glob("*.py"))  # their change invalidates cached results
NOT_OUTPUT_PARAMS = ("workers",)  # every other key of `faces` changes the crops
CACHED = ("ok", "no_face")  # properties of the file's bytes; a failure may be transient: recomputed


def _number(cfg: dict, key: str, ok, rule: str, whole: bool = False):
    value = cfg.get(key)
    kind_ok = isinstance(value, numbers.Integral if whole else numbers.Real) and not isinstance(value, bool)
    if not kind_ok or not ok(value):
        given = "missing" if key not in cfg else f"{value!r} is not valid"
        raise ParamError(f"faces.{key}: {given}; give {rule}")
    return value


def check_config(cfg: dict) -> dict:
    """Validate params.yaml `faces` up front: a wrong value names its key instead of failing per clip."""
    _number(cfg, "n_frames", lambda v: v >= 1, "a whole number of frames >= 1", whole=True)
    _number(cfg, "crop_px", lambda v: 8 <= v <= 1024, "a crop side in pixels between 8 and 1024", whole=True)
    _number(cfg, "margin", lambda v: 0 <= v <= 2, "a fraction of the box side between 0 and 2")
    _number(cfg, "min_face", lambda v: 0 < v <= 1, "a fraction of the frame's shorter side in (0, 1]")
    haar = detector_name(cfg) == "haar"  # ParamError naming the valid detectors when unknown
    if haar or "scale_factor" in cfg:  # Haar's keys: needed by haar, checked whenever given
        _number(cfg, "scale_factor", lambda v: 1 < v <= 2, "a pyramid step above 1 and at most 2 (e.g. 1.1)")
    if haar or "min_neighbors" in cfg:
        _number(cfg, "min_neighbors", lambda v: v >= 0, "a whole number of votes >= 0", whole=True)
    if "detect_size" in cfg:
        _number(cfg, "detect_size", lambda v: 64 <= v <= 4096, "a longer side in pixels between 64 and 4096",
                whole=True)
    if "track_step" in cfg:
        _number(cfg, "track_step", lambda v: v >= 1, "a whole number of sampled frames >= 1 (1: no tracking)",
                whole=True)
    if "track_iou" in cfg:
        _number(cfg, "track_iou", lambda v: 0 <= v <= 1, "an IoU between 0 and 1")
    if not isinstance(cfg.get("align", False), bool):
        raise ParamError(f"faces.align: {cfg['align']!r} is not valid; give true or false")
    resolve_workers(cfg.get("workers", 1), "faces.workers")
    return cfg


def declared_frames(video: Path) -> int:
    """Frame count the container declares (0 when unknown); a truncated file declares more than it holds."""
    capture = cv2.VideoCapture(str(video))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
    finally:
        capture.release()


def process_clip(video: Path, cfg: dict, out: Path) -> dict:
    """Crops of one clip saved as `out/strips/<clip>.jpg`, with its boxes, landmarks and detection flags."""
    try:
        track = crop_faces(video, cfg)
    except (VideoError, cv2.error) as err:
        message = str(err) if str(video) in str(err) else f"{video}: {str(err).strip() or type(err).__name__}"
        return {"clip": video.stem, "status": "failed", "message": message}
    save_strip(track.crops, out / "strips" / f"{video.stem}.jpg")
    result = {"clip": video.stem, "status": "ok" if any(track.detected) else "no_face",
              "detection_rate": round(track.detection_rate, 3), "fps": track.fps,
              "frame_size": track.frame_size, "frame_indices": track.frame_indices,
              "boxes": track.boxes, "detected": track.detected, "tracked": track.tracked,
              "landmarks": track.landmarks,
              **({"message": f"{video}: no face found in any sampled frame; centre crops used"}
                 if not any(track.detected) else {})}
    decoded, declared = track.info["decoded_frames"], track.info["declared_frames"]
    if declared and decoded < 0.9 * declared:  # sampled from the frames that could be decoded
        result["partial"] = (f"{video}: only about {decoded} of the {declared} frames it declares could be "
                             "decoded (truncated file?); frames sampled from that part")
    return result


def clip_job(job: dict, file: str) -> dict:
    """One clip through the cache (runs in a worker process): its result and the cache counters it moved."""
    raw, tmp, cache, cfg = job["raw"], job["tmp"], job["cache"], job["cfg"]
    video = raw / "clips" / file
    try:
        result = cache.through(video, {"strip.jpg": tmp / "strips" / f"{video.stem}.jpg"},
                               lambda: process_clip(video, cfg, tmp),
                               keep=lambda r: r["status"] in CACHED,
                               check=lambda r, files: r["status"] in CACHED and files == {"strip.jpg"})
        result = {**result, "clip": video.stem}  # the key is the content: same bytes, other name
    except OSError as err:  # could not write the strip: full disk, size limit...
        result = {"clip": video.stem, "status": "write_failed", "message": str(as_final(err, tmp, job["out"]))}
    return {"result": result, "cache": cache.take_counts()}


def one_detector_thread() -> None:
    """Detection networks run on one thread per worker: their layers are too small to gain from more,
    and on a loaded machine two threads spinning at OpenMP barriers ran MTCNN 5x slower than one.
    The cores go to the workers and to the video decoder's threads instead."""
    import torch

    torch.set_num_threads(1)


def _versions() -> dict:
    import av
    import torch

    return {"opencv": cv2.__version__, "av": av.__version__, "libavcodec": str(av.library_versions.get("libavcodec")),
            "torch": torch.__version__}


def run(cfg: dict, raw: Path, out: Path, cache_dir: Path | None = None) -> dict:
    check_config(cfg)
    workers = resolve_workers(cfg.get("workers", 1), "faces.workers")
    prepare(cfg)  # missing weights: one error here, not one per clip
    leftovers = remove_stale_temporaries(out.parent, out.name)
    clips = read_metadata(raw / "metadata.csv")["file"].tolist()
    cache = ClipCache(cache_dir, "faces", {k: v for k, v in cfg.items() if k not in NOT_OUTPUT_PARAMS},
                      code=CODE, extra=_versions())

    with atomic_path(out) as tmp:
        (tmp / "strips").mkdir(parents=True)
        job = partial(clip_job, {"cfg": cfg, "raw": raw, "tmp": tmp, "out": out, "cache": cache})
        done = map_clips(job, clips, workers, "faces", processes=True, initializer=one_detector_thread,
                         stop=lambda r: r["result"]["status"] == "write_failed",
                         preload=("avemo.faces.mtcnn", "av") if detector_name(cfg) == "mtcnn" else ("av",))
        for item in done:
            if item is not None:
                cache.add_counts(item["cache"])
        results = [item["result"] for item in done if item is not None]
        failed_writes = [r["message"] for r in results if r["status"] == "write_failed"]
        if failed_writes:
            raise StageError(f"{failed_writes[0]}; stopped, {out} left as it was")
        report = _report(cfg, raw, clips, results)
        write_final_json({"tracks.json": {r["clip"]: r for r in results if r["status"] != "failed"},
                          "report.json": report}, tmp, out)
    cache.write_summary()
    if leftovers:
        print(f"faces: removed {leftovers} leftover(s) of an interrupted run beside {out}")
    for line in cache.warnings + [s["message"] for s in report["skipped"]] + report["no_face"] + report["partial"]:
        print(f"warning: {line}")
    print(f"faces: {report['clips']} clips, mean detection rate {report['mean_detection_rate']}, "
          f"{len(report['skipped'])} unreadable; {cache.describe()}")
    return report


def _report(cfg: dict, raw: Path, clips: list, results: list[dict]) -> dict:
    usable = [r for r in results if r["status"] != "failed"]
    if clips and not usable:
        raise StageError(f"{raw / 'clips'}: no clip could be decoded")
    rates = [r["detection_rate"] for r in usable]
    return {"config": {k: v for k, v in cfg.items() if k not in NOT_OUTPUT_PARAMS}, "clips": len(usable),
            "mean_detection_rate": round(float(np.mean(rates)), 4) if rates else None,
            "detection_rate": {r["clip"]: r["detection_rate"] for r in usable},
            "skipped": [r for r in results if r["status"] == "failed"],
            "no_face": [r["message"] for r in usable if r["status"] == "no_face"],
            "partial": [r["partial"] for r in usable if r.get("partial")]}
