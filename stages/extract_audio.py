"""Stage 2: 16 kHz mono wav per clip with ffmpeg; clips without or with silent audio are reported."""
import argparse
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import _bootstrap  # noqa: F401
from avemo.audio import extract_audio
from avemo.io import atomic_path, load_params, write_json
from avemo.metadata import read_metadata
from avemo.parallel import map_clips
from avemo.stage import StageError, run_stage


def run(params: dict, raw: Path, out: Path) -> dict:
    clips = read_metadata(raw / "metadata.csv")["file"].tolist()
    with atomic_path(out) as tmp:
        results = map_clips(lambda f: extract_audio(raw / "clips" / f, tmp / "wav" / f.replace(".mp4", ".wav"),
                                                    params["sample_rate"]),
                            clips, params.get("workers", 2), "extract_audio")
        counts = Counter(r.status for r in results)
        if clips and counts["ok"] == 0:
            raise StageError(f"{raw / 'clips'}: no clip gave usable audio ({dict(counts)})")
        (tmp / "wav").mkdir(parents=True, exist_ok=True)
        report = {"sample_rate": params["sample_rate"], "counts": dict(counts),
                  "skipped": [asdict(r) for r in results if r.status != "ok"]}
        write_json(tmp / "report.json", report)
    for problem in report["skipped"]:
        print(f"warning: {problem['message']}")
    print(f"extract_audio: {dict(counts)}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run_stage(lambda: run(load_params("audio"), args.raw, args.out))


if __name__ == "__main__":
    main()
