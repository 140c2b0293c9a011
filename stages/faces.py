"""Stage 3: sample frames at equal intervals, crop the largest face, store strips and boxes.

With --cache, each clip's result is looked up in a content-addressed cache first (avemo/cache.py),
so a rerun after new clips were added only decodes the new ones."""
import numbers
import threading
from pathlib import Path

import cv2
import numpy as np

from avemo.cache import ClipCache
from avemo.io import as_final, atomic_path, remove_stale_temporaries
from avemo.errors import ParamError, StageError, VideoError
from avemo.metadata import read_metadata
from avemo.parallel import map_clips
from avemo.stage import per_clip_main, write_final_json
from avemo.video import crop_faces, save_strip

ROOT = Path(__file__).resolve().parent.parent
CODE = [ROOT / "avemo" / "video.py", Path(__file__).resolve()]  # their change invalidates cached results
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
    _number(cfg, "size", lambda v: 8 <= v <= 1024, "a crop side in pixels between 8 and 1024", whole=True)
    _number(cfg, "margin", lambda v: 0 <= v <= 2, "a fraction of the box side between 0 and 2")
    _number(cfg, "scale_factor", lambda v: 1 < v <= 2, "a pyramid step above 1 and at most 2 (e.g. 1.1)")
    _number(cfg, "min_neighbors", lambda v: v >= 0, "a whole number of votes >= 0", whole=True)
    _number(cfg, "min_face", lambda v: 0 < v <= 1, "a fraction of the frame's shorter side in (0, 1]")
    if "workers" in cfg:
        _number(cfg, "workers", lambda v: v >= 1, "a whole number of threads >= 1", whole=True)
    return cfg


def process_clip(video: Path, cfg: dict, out: Path) -> dict:
    """Crops of one clip saved as `out/strips/<clip>.jpg`, with its boxes and detection flags."""
    try:
        track = crop_faces(video, cfg)
    except (VideoError, cv2.error) as err:
        message = str(err) if str(video) in str(err) else f"{video}: {str(err).strip() or type(err).__name__}"
        return {"clip": video.stem, "status": "failed", "message": message}
    save_strip(track.crops, out / "strips" / f"{video.stem}.jpg")
    result = {"clip": video.stem, "status": "ok" if any(track.detected) else "no_face",
              "detection_rate": round(track.detection_rate, 3), "fps": track.fps,
              "frame_size": track.frame_size, "frame_indices": track.frame_indices,
              "boxes": track.boxes, "detected": track.detected,
              **({"message": f"{video}: no face found in any sampled frame; centre crops used"}
                 if not any(track.detected) else {})}
    declared = declared_frames(video)
    decoded = (max(track.frame_indices) + 1) * cfg["n_frames"] / (cfg["n_frames"] - 0.5) if track.frame_indices else 0
    if declared and decoded < 0.9 * declared:  # sample_frames fell back to the frames it could decode
        result["partial"] = (f"{video}: only about {int(decoded)} of the {declared} frames it declares could be "
                             "decoded (truncated file?); frames sampled from that part")
    return result


def declared_frames(video: Path) -> int:
    """Frame count the container declares (0 when unknown); a truncated file declares more than it holds."""
    capture = cv2.VideoCapture(str(video))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
    finally:
        capture.release()


def run(cfg: dict, raw: Path, out: Path, cache_dir: Path | None = None) -> dict:
    check_config(cfg)
    leftovers = remove_stale_temporaries(out.parent, out.name)
    clips = read_metadata(raw / "metadata.csv")["file"].tolist()
    cache = ClipCache(cache_dir, "faces", {k: v for k, v in cfg.items() if k not in NOT_OUTPUT_PARAMS},
                      code=CODE, extra={"opencv": cv2.__version__})
    failure: list[OSError] = []  # the first output write error stops the remaining clips
    lock = threading.Lock()

    with atomic_path(out) as tmp:
        (tmp / "strips").mkdir(parents=True)

        def one(file: str):
            if failure:
                return None
            video = raw / "clips" / file
            try:
                result = cache.through(video, {"strip.jpg": tmp / "strips" / f"{video.stem}.jpg"},
                                       lambda: process_clip(video, cfg, tmp),
                                       keep=lambda r: r["status"] in CACHED,
                                       check=lambda r, files: r["status"] in CACHED and files == {"strip.jpg"})
                return {**result, "clip": video.stem}  # the key is the content: the same bytes may have another name
            except OSError as err:  # could not write the strip: full disk, size limit...
                with lock:
                    failure.append(as_final(err, tmp, out))
                return None

        results = map_clips(one, clips, cfg.get("workers", 2), "faces")
        if failure:
            raise StageError(f"{failure[0]}; stopped, {out} left as it was")
        usable = [r for r in results if r["status"] != "failed"]
        if clips and not usable:
            raise StageError(f"{raw / 'clips'}: no clip could be decoded")
        rates = [r["detection_rate"] for r in usable]
        report = {"config": cfg, "clips": len(usable), "mean_detection_rate": round(float(np.mean(rates)), 4)
                  if rates else None, "detection_rate": {r["clip"]: r["detection_rate"] for r in usable},
                  "skipped": [r for r in results if r["status"] == "failed"],
                  "no_face": [r["message"] for r in usable if r["status"] == "no_face"],
                  "partial": [r["partial"] for r in usable if r.get("partial")]}
        write_final_json({"tracks.json": {r["clip"]: r for r in usable}, "report.json": report}, tmp, out)
    cache.write_summary()
    if leftovers:
        print(f"faces: removed {leftovers} leftover(s) of an interrupted run beside {out}")
    for line in cache.warnings + [s["message"] for s in report["skipped"]] + report["no_face"] + report["partial"]:
        print(f"warning: {line}")
    print(f"faces: {len(usable)} clips, mean detection rate {report['mean_detection_rate']}, "
          f"{len(report['skipped'])} unreadable; {cache.describe()}")
    return report


def main() -> None:
    per_clip_main(__doc__, "faces", run)


if __name__ == "__main__":
    main()
