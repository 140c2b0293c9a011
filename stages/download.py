"""Stage 1: fetch RAVDESS audio+video speech archives, verify md5, unpack clips, write metadata."""
import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (puts the repository root on sys.path)
from avemo.download import UnpackResult, fetch_archive, resolve_remote, select_actors, unpack_speech_clips, ARCHIVE
from avemo.io import atomic_path, load_params, write_json
from avemo.metadata import write_metadata
from avemo.stage import run_stage


def download(params: dict, sample_dir: Path, archives: Path, out: Path) -> dict:
    remote = resolve_remote(params["source"], params.get("mirror"), sample_dir)
    actors = select_actors(params.get("actors", "all"), remote)
    result = UnpackResult()
    with atomic_path(out) as tmp:
        for actor in actors:
            archive = fetch_archive(remote, ARCHIVE.format(actor), archives)
            unpack_speech_clips(archive, tmp / "clips", result)
        rows = write_metadata(tmp / "clips", tmp / "metadata.csv")
        report = {"source": remote.location, "actors": actors, "clips": rows,
                  "video_only_copies_ignored": result.video_only_copies, "skipped": result.skipped}
        write_json(tmp / "report.json", report)
    print(f"download: {rows} audio+video speech clips from {len(actors)} actors ({remote.location}); "
          f"{result.video_only_copies} video-only copies ignored, {len(result.skipped)} files skipped")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample-dir", type=Path, required=True, help="embedded sample archives")
    parser.add_argument("--archives", type=Path, required=True, help="download cache for http sources")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run_stage(lambda: download(load_params("data"), args.sample_dir, args.archives, args.out))


if __name__ == "__main__":
    main()
