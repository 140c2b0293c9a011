"""Stage 3: sample frames at equal intervals, crop the largest face, store strips and boxes."""
import argparse
from pathlib import Path

import numpy as np

import _bootstrap  # noqa: F401
from avemo.io import atomic_path, load_params, write_json
from avemo.metadata import read_metadata
from avemo.parallel import map_clips
from avemo.stage import StageError, run_stage
from avemo.video import VideoError, crop_faces, save_strip


def process_clip(video: Path, cfg: dict, out: Path) -> dict:
    try:
        track = crop_faces(video, cfg)
    except VideoError as err:
        return {"clip": video.stem, "status": "failed", "message": str(err)}
    save_strip(track.crops, out / "strips" / f"{video.stem}.jpg")
    return {"clip": video.stem, "status": "ok" if any(track.detected) else "no_face",
            "detection_rate": round(track.detection_rate, 3), "fps": track.fps,
            "frame_size": track.frame_size, "frame_indices": track.frame_indices,
            "boxes": track.boxes, "detected": track.detected,
            **({"message": f"{video}: no face found in any sampled frame; centre crops used"}
               if not any(track.detected) else {})}


def run(cfg: dict, raw: Path, out: Path) -> dict:
    clips = read_metadata(raw / "metadata.csv")["file"].tolist()
    with atomic_path(out) as tmp:
        (tmp / "strips").mkdir(parents=True)
        results = map_clips(lambda f: process_clip(raw / "clips" / f, cfg, tmp), clips,
                            cfg.get("workers", 2), "faces")
        usable = [r for r in results if r["status"] != "failed"]
        if clips and not usable:
            raise StageError(f"{raw / 'clips'}: no clip could be decoded")
        write_json(tmp / "tracks.json", {r["clip"]: r for r in usable})
        rates = [r["detection_rate"] for r in usable]
        report = {"config": cfg, "clips": len(usable), "mean_detection_rate": round(float(np.mean(rates)), 4)
                  if rates else None, "detection_rate": {r["clip"]: r["detection_rate"] for r in usable},
                  "skipped": [r for r in results if r["status"] == "failed"],
                  "no_face": [r["message"] for r in usable if r["status"] == "no_face"]}
        write_json(tmp / "report.json", report)
    for line in [s["message"] for s in report["skipped"]] + report["no_face"]:
        print(f"warning: {line}")
    print(f"faces: {len(usable)} clips, mean detection rate {report['mean_detection_rate']}, "
          f"{len(report['skipped'])} unreadable")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run_stage(lambda: run(load_params("faces"), args.raw, args.out))


if __name__ == "__main__":
    main()
