"""Benchmark: clips per second of the extract_audio and faces stages' per-clip work against ffmpeg's
bare decode of the same files, with 1 and 2 workers, and the memory peak of each.

What is timed (each measurement in a fresh Python process, so that its peak memory is its own):
  extract_audio   avemo.audio.extract_audio (ffmpeg decode -> 16 kHz mono float -> wav), the stage's work
  faces           stages/faces.py process_clip (OpenCV decode, Haar detection on 16 frames, crops, JPEG strip)
  ffmpeg audio    `ffmpeg -i CLIP -vn -f null -`  (imageio-ffmpeg's binary: audio decode only, no output)
  ffmpeg video    `ffmpeg -i CLIP -an -f null -`  (video decode only, no output)
Workers are threads of avemo.parallel.map_clips, as in the stages; the ffmpeg baselines run the same
number of ffmpeg processes at a time. The ratio (stage clips/s / ffmpeg clips/s) is taken within ONE
run, measurements interleaved, because this kind of machine is noisy: absolute clips/s drift from run
to run more than the ratio does. The per-clip cache of the stages is NOT used (this is the work a
cache miss costs). Peak memory: ru_maxrss of the measuring process (Python side) and the largest
ffmpeg child (RUSAGE_CHILDREN), in MiB.

Default clip sets: the ravdess-lite clips of actors 1 and 2 (120 clips, 400x224), unpacked to a
temporary folder, and the 7 audio+video 720p files of ravdess-720p/Actor_01 (1280x720). The shared
data is found like the tests do: $AVEMO_SHARED, else ../shared beside the repository.

  python benchmarks/preprocess.py                       # the defaults above
  python benchmarks/preprocess.py --actors 1 --workers 1 --no-hd
  python benchmarks/preprocess.py --clips some/folder other.mp4 --json results.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KINDS = ("ffmpeg-audio", "extract_audio", "ffmpeg-video", "faces")
BASELINE = {"extract_audio": "ffmpeg-audio", "faces": "ffmpeg-video"}


def shared_dir() -> Path:
    return Path(os.environ.get("AVEMO_SHARED", ROOT.parent / "shared"))


# ------------------------------------------------------------------ one measurement (child process)


def measure(kind: str, clips: list[Path], workers: int, params_path: Path, scratch: Path) -> dict:
    """Time `kind` over `clips` in this process; returns seconds, statuses and peak memory."""
    import yaml

    from avemo.audio import extract_audio, ffmpeg_exe
    from avemo.parallel import map_clips

    params = yaml.safe_load(params_path.read_text())
    if kind.startswith("ffmpeg"):
        exe = ffmpeg_exe()
        drop = "-vn" if kind == "ffmpeg-audio" else "-an"

        def work(clip: Path) -> str:
            done = subprocess.run([exe, "-nostdin", "-v", "error", "-i", str(clip), drop, "-f", "null", "-"],
                                  capture_output=True)
            return "ok" if done.returncode == 0 else "failed"
    elif kind == "extract_audio":
        rate = params["audio"]["sample_rate"]

        def work(clip: Path) -> str:
            return extract_audio(clip, scratch / "wav" / f"{clip.stem}.wav", rate).status
    elif kind == "faces":
        sys.path.insert(0, str(ROOT / "stages"))
        spec = importlib.util.spec_from_file_location("faces_stage", ROOT / "stages" / "faces.py")
        stage = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stage)
        cfg = stage.check_config(dict(params["faces"]))
        (scratch / "strips").mkdir(parents=True, exist_ok=True)

        def work(clip: Path) -> str:
            return stage.process_clip(clip, cfg, scratch)["status"]
    else:
        raise SystemExit(f"unknown measurement {kind}")
    start = time.perf_counter()
    statuses = map_clips(work, clips, workers, kind)
    seconds = time.perf_counter() - start
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    kib = 1 if sys.platform != "darwin" else 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return {"kind": kind, "workers": workers, "clips": len(clips), "seconds": seconds, "statuses": counts,
            "python_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib / 1024,
            "child_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib / 1024}


def run_child(kind: str, clips: list[Path], workers: int, params_path: Path, scratch: Path) -> dict:
    listing = scratch / f"{kind}-{workers}.json"
    listing.write_text(json.dumps([str(c) for c in clips]))
    out = scratch / f"{kind}-{workers}"
    done = subprocess.run([sys.executable, __file__, "--_measure", kind, "--_list", str(listing),
                           "--_scratch", str(out), "--workers", str(workers), "--params", str(params_path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"measurement {kind} x{workers} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ clip sets and report


def lite_clips(lite: Path, actors: list[int], into: Path) -> list[Path]:
    from avemo.download import ARCHIVE, UnpackResult, unpack_speech_clips

    result = UnpackResult()
    for actor in actors:
        archive = lite / ARCHIVE.format(actor)
        if not archive.exists():
            raise SystemExit(f"{archive}: not found (give --lite, set AVEMO_SHARED, or use --clips)")
        unpack_speech_clips(archive, into, result)
    return sorted(into.glob("*.mp4"))


def collect(paths: list[Path]) -> list[Path]:
    clips = []
    for path in paths:
        clips += sorted(path.glob("*.mp4")) if path.is_dir() else [path]
    if not clips:
        raise SystemExit(f"no .mp4 clip in {', '.join(map(str, paths))}")
    return clips


def machine() -> str:
    import cv2
    import imageio_ffmpeg

    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
            f"OpenCV {cv2.__version__}, ffmpeg {imageio_ffmpeg.get_ffmpeg_version()} (imageio-ffmpeg)")


def table(rows: list[dict]) -> str:
    lines = ["| clips | step | workers | n | seconds | clips/s | ffmpeg bare decode clips/s | ratio "
             "| peak RSS Python MiB | peak RSS ffmpeg MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base = row.get("baseline")
        lines.append(
            f"| {row['set']} | {row['kind']} | {row['workers']} | {row['clips']} | {row['seconds']:.1f} "
            f"| {row['clips_per_s']:.2f} | {base['clips_per_s']:.2f} | {row['ratio']:.2f} "
            f"| {row['python_peak_mib']:.0f} | {row['child_peak_mib']:.0f} |" if base else
            f"| {row['set']} | {row['kind']} | {row['workers']} | {row['clips']} | {row['seconds']:.1f} "
            f"| {row['clips_per_s']:.2f} | | | {row['python_peak_mib']:.0f} | {row['child_peak_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lite", type=Path, default=shared_dir() / "ravdess-lite",
                        help="folder of Video_Speech_Actor_XX.zip (default: $AVEMO_SHARED/ravdess-lite)")
    parser.add_argument("--actors", type=int, nargs="*", default=[1, 2],
                        help="ravdess-lite actors to unpack and time (default: 1 2; none: skip lite)")
    parser.add_argument("--hd", type=Path, default=shared_dir() / "ravdess-720p" / "Actor_01",
                        help="folder of original 1280x720 files; its 01-*.mp4 (audio+video) are timed")
    parser.add_argument("--no-hd", action="store_true", help="skip the 720p set")
    parser.add_argument("--clips", type=Path, nargs="+",
                        help="time these .mp4 files / folders instead of the default sets")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    parser.add_argument("--steps", nargs="+", choices=("extract_audio", "faces"), default=["extract_audio", "faces"])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                        help="parameters of the stages (audio.sample_rate, faces.*)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--_measure", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--_list", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._measure:  # child: one measurement, one JSON line
        args._scratch.mkdir(parents=True, exist_ok=True)
        (args._scratch / "wav").mkdir(exist_ok=True)
        clips = [Path(c) for c in json.loads(args._list.read_text())]
        print(json.dumps(measure(args._measure, clips, args.workers[0], args.params, args._scratch)))
        return

    with tempfile.TemporaryDirectory(prefix="avemo-bench-") as scratch:
        scratch = Path(scratch)
        sets: list[tuple[str, list[Path]]] = []
        if args.clips:
            sets.append(("custom", collect(args.clips)))
        else:
            if args.actors:
                clips = lite_clips(args.lite, args.actors, scratch / "lite")
                sets.append((f"lite 400x224, actors {', '.join(map(str, args.actors))}", clips))
            if not args.no_hd:
                if not args.hd.is_dir():
                    raise SystemExit(f"{args.hd}: not found (give --hd, set AVEMO_SHARED, or --no-hd)")
                sets.append(("720p 1280x720, Actor_01 01-*", sorted(args.hd.glob("01-*.mp4"))))
        print(f"machine: {machine()}", flush=True)
        rows = []
        for name, clips in sets:
            for workers in args.workers:
                done: dict[str, dict] = {}
                for step in args.steps:
                    for kind in (BASELINE[step], step):  # baseline then stage, back to back
                        result = run_child(kind, clips, workers, args.params, scratch)
                        result["set"], result["clips_per_s"] = name, result["clips"] / result["seconds"]
                        done[kind] = result
                        print(f"{name}: {kind} x{workers}: {result['clips']} clips in {result['seconds']:.2f} s "
                              f"({result['clips_per_s']:.2f} clips/s) {result['statuses']}, peak "
                              f"{result['python_peak_mib']:.0f} MiB Python / {result['child_peak_mib']:.0f} MiB "
                              "ffmpeg", flush=True)
                    stage_row = done[step]
                    stage_row["baseline"] = done[BASELINE[step]]
                    stage_row["ratio"] = stage_row["clips_per_s"] / done[BASELINE[step]]["clips_per_s"]
                    rows += [done[BASELINE[step]], stage_row]
        print()
        print(table(rows))
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "rows": rows},
                                            indent=1, default=str))


if __name__ == "__main__":
    main()
