"""Stage 1: fetch RAVDESS audio+video speech archives, verify md5, unpack clips, write metadata."""
import argparse
from pathlib import Path

from avemo.download import UnpackResult, fetch_archive, resolve_remote, select_actors, unpack_speech_clips, ARCHIVE
from avemo.io import atomic_path, load_params, remove_stale_temporaries, write_json
from avemo.errors import ParamError, WriteError, StageError
from avemo.metadata import write_metadata
from avemo.entry import run_stage


def download(params: dict, sample_dir: Path, archives: Path, out: Path) -> dict:
    if "source" not in params:
        raise ParamError("data.source: missing; choose one of: sample, zenodo, mirror")
    remote = resolve_remote(params["source"], params.get("mirror"), sample_dir)
    actors = select_actors(params.get("actors", "all"), remote)
    result = UnpackResult()
    leftovers = remove_stale_temporaries(out.parent, out.name)
    try:
        with atomic_path(out) as tmp:
            for actor in actors:
                archive = fetch_archive(remote, ARCHIVE.format(actor), archives)
                unpack_speech_clips(archive, tmp / "clips", result)
            (tmp / "clips").mkdir(parents=True, exist_ok=True)
            rows = write_metadata(tmp / "clips", tmp / "metadata.csv")
            if rows == 0:
                raise StageError(f"{remote.location}: the archives of actors {actors} hold no audio+video "
                                 f"speech clip (01-01-*.mp4); {len(result.skipped)} files skipped")
            report = {"source": remote.location, "actors": actors, "clips": rows,
                      "video_only_copies_ignored": result.video_only_copies, "skipped": result.skipped}
            write_json(tmp / "report.json", report)
    except OSError as err:
        if isinstance(err, WriteError) or err.filename:
            raise
        raise StageError(f"{out}: cannot write ({err.strerror or err}); {out} left as it was") from None
    if leftovers:
        print(f"download: removed {leftovers} leftover(s) of an interrupted run beside {out}")
    for skipped in result.skipped:
        print(f"warning: {skipped['file']}: skipped ({skipped['reason']})")
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
