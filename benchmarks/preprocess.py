"""Benchmark of the preprocessing stages against ffmpeg's bare decode, in one run, written to
docs/results/benchmarks/preprocess.json (and printed as the tables of docs/benchmarks.md section 1).

Per clip set (the 720p originals of ravdess-720p/Actor_01, and ravdess-lite clips unpacked to a
temporary folder), each measurement in a fresh Python process:
  ffmpeg video / audio  `ffmpeg -i CLIP -an|-vn -f null -` (imageio-ffmpeg's binary), N processes at a time
  faces:<config>        the faces stage's per-clip work (avemo.faces.crop_clips.process_clip: sampled decode,
                        detection, tracking, crops, JPEG strip) in the stage's worker processes, for each
                        detector configuration of CONFIGS; the per-clip cache is not used (a cache miss)
  extract_audio         avemo.audio.extract_audio in the stage's threads
  decode:<method>       frame sampling alone (avemo.faces.decode.METHODS: sampled = PyAV skipping unneeded
                        non-reference frames, all = PyAV decoding every frame, opencv = the former grab()
                        path, seek = keyframe seeking), one process, FFmpeg's own threads or one thread
  features:<encoder>    the features stage's cost per clip of each encoder (avemo.encoders.registry,
                        --encoders): video encoders on the 16 crops the faces run wrote, audio encoders
                        (whisper...) on the clip's audio window
with 1 and 2 workers. Speed is read as ratios within the run (stage clips/s / bare-decode clips/s of
the same files measured just before), since this kind of machine is shared and its absolute speed
drifts. Faces clips/s are over the processing window (first clip start to last clip end): the
one-off start of the worker pool and of torch is reported apart (`startup_s`). Memory: the peak of the
summed PSS of the measuring process and all its descendants (workers, ffmpeg), sampled every 0.2 s.

Detection quality, from the same runs: per clip the share of sampled frames with a face, and the box
stability (mean IoU of consecutive sampled frames' boxes); agreement with the detect-every-frame run;
crop steadiness (mean absolute difference of consecutive crops, 0-255) with and without `align`.

  python benchmarks/preprocess.py                                   # defaults, writes the JSON
  python benchmarks/preprocess.py --actors 1 --workers 1 --encoders --json /tmp/p.json
  python benchmarks/preprocess.py --no-hd --configs mtcnn haar --encoders fer imagenet whisper
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "docs" / "results" / "benchmarks" / "preprocess.json"

# Faces configurations timed: overrides of params.yaml `faces` (workers come from --workers).
CONFIGS = {
    "mtcnn": {},  # the default of params.yaml
    "mtcnn_every_frame": {"track_step": 1},  # no tracking: the detector sees all 16 frames
    "mtcnn_align": {"align": True},
    "haar": {"detector": "haar", "track_step": 1},  # the original detector, every frame
}


def load_encoder(name: str, params: dict):
    """One encoder of the features stage by name (avemo.encoders.registry), as f(input) for one clip:
    video encoders take the clip's face crops, audio encoders its audio window."""
    from avemo.encoders.registry import load_encoder as load
    from avemo.encoders.registry import modality_of

    section = params["features"][modality_of(name)]
    return load(name, section[name], params["audio"]["sample_rate"], section.get("logmel"))


def shared_dir() -> Path:
    return Path(os.environ.get("AVEMO_SHARED", ROOT.parent / "shared"))


class PeakMemory:
    """Peak memory (MiB) of this process and all its descendants (workers, ffmpeg), sampled in a thread:
    the sum of their proportional set sizes (shared pages such as torch's libraries counted once over
    the processes that share them) once a second, since reading it costs ~16 ms a process; the sum and
    the largest of their resident sets every 0.1 s."""

    def __init__(self, every: float = 0.1, pss_every: int = 10):
        import psutil

        self.process, self.every, self.pss_every = psutil.Process(), every, pss_every
        self.pss = self.rss = self.largest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        tick = 0
        while not self._stop.is_set():
            rss = pss = largest = 0
            for proc in [self.process] + self.process.children(recursive=True):
                try:
                    info = proc.memory_full_info() if tick % self.pss_every == 0 else proc.memory_info()
                except psutil.Error:
                    continue
                rss, largest, pss = rss + info.rss, max(largest, info.rss), pss + getattr(info, "pss", 0)
            self.rss, self.largest = max(self.rss, rss / 2**20), max(self.largest, largest / 2**20)
            self.pss = max(self.pss, pss / 2**20)
            tick += 1
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------ one measurement (child process)


def _timed_clip(cfg: dict, scratch: Path, clip: str) -> dict:
    """The stage's per-clip work, with its start and end times (run in a faces worker process)."""
    from avemo.faces.crop_clips import process_clip

    start, cpu = time.time(), time.process_time()  # process_time: every thread of this worker (decoder's too)
    result = process_clip(Path(clip), cfg, scratch)
    return {**result, "start": start, "end": time.time(), "cpu_s": time.process_time() - cpu}


def measure(kind: str, clips: list[Path], workers: int, params: dict, scratch: Path) -> dict:
    from functools import partial

    from avemo.audio import extract_audio, ffmpeg_exe
    from avemo.parallel import map_clips

    import resource

    def cpu_now() -> float:  # this process and its finished children (ffmpeg)
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    extra: dict = {}
    with PeakMemory() as memory:
        start, cpu = time.perf_counter(), cpu_now()
        if kind.startswith("ffmpeg"):
            drop = "-vn" if kind == "ffmpeg-audio" else "-an"
            command = lambda clip: [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(clip), drop, "-f", "null", "-"]
            results = map_clips(lambda c: subprocess.run(command(c), capture_output=True).returncode, clips,
                                workers, kind)
            extra["statuses"] = {"ok": results.count(0), "failed": len(results) - results.count(0)}
        elif kind == "extract_audio":
            rate = params["audio"]["sample_rate"]
            results = map_clips(lambda c: extract_audio(c, scratch / f"{c.stem}.wav", rate).status, clips, workers, kind)
            extra["statuses"] = {s: results.count(s) for s in set(results)}
        elif kind.startswith("faces:"):
            from avemo.faces.crop_clips import check_config, one_detector_thread

            cfg = check_config({**params["faces"], **CONFIGS[kind.split(":", 1)[1]], "workers": workers})
            (scratch / "strips").mkdir(parents=True, exist_ok=True)
            results = map_clips(partial(_timed_clip, cfg, scratch), [str(c) for c in clips], workers, kind,
                                processes=True, initializer=one_detector_thread, preload=("avemo.faces.mtcnn",))
            window = max(r["end"] for r in results) - min(r["start"] for r in results)
            extra.update(window_s=window, clips_per_s_window=len(clips) / window, results=results,
                         cpu_s_per_clip=sum(r["cpu_s"] for r in results) / len(results))
        elif kind.startswith("decode:"):
            from avemo.faces.decode import METHODS

            _, method, threads = kind.split(":")
            samples = [METHODS[method](c, params["faces"]["n_frames"], int(threads)) for c in clips]
            extra["decoded_frames_per_clip"] = sum(s.decoded for s in samples) / len(samples)
        elif kind.startswith("features:"):
            import torch

            from avemo.encoders.registry import modality_of

            _, name, threads = kind.split(":")
            if int(threads) > 0:
                torch.set_num_threads(int(threads))
            encode = load_encoder(name, params).encode
            if modality_of(name) == "video":  # `clips` are the strips of a faces run
                from avemo.faces.strip import load_strip

                inputs = [load_strip(c, params["faces"]["n_frames"]) for c in clips]
            else:  # `clips` are videos: their audio window
                from avemo.audio import decode_audio
                from avemo.preprocess import audio_window

                inputs = [audio_window(decode_audio(c, params["audio"]["sample_rate"]), params["audio"])
                          for c in clips]
            start, cpu = time.perf_counter(), cpu_now()  # per-clip cost, the model loaded and the inputs read
            for item in inputs:
                encode(item)
            extra["torch_threads"] = torch.get_num_threads()
        seconds = time.perf_counter() - start
        extra.setdefault("cpu_s_per_clip", (cpu_now() - cpu) / max(1, len(clips)))
    return {"kind": kind, "workers": workers, "clips": len(clips), "seconds": seconds,
            "clips_per_s": len(clips) / seconds, "peak_pss_mib": round(memory.pss, 1),
            "peak_rss_sum_mib": round(memory.rss, 1), "largest_process_rss_mib": round(memory.largest, 1), **extra}


def run_child(kind: str, clips: list[Path], workers: int, scratch: Path, params_path: Path) -> dict:
    scratch.mkdir(parents=True, exist_ok=True)
    listing = scratch / "clips.json"
    listing.write_text(json.dumps([str(c) for c in clips]))
    out = scratch / kind.replace(":", "_") / str(workers)
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, __file__, "--_measure", kind, "--_list", str(listing), "--_scratch",
                           str(out), "--workers", str(workers), "--params", str(params_path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"measurement {kind} x{workers} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ quality figures


def quality(results: list[dict], reference: list[dict] | None = None) -> dict:
    """Detection rate and box stability over clips; IoU against a reference run of the same clips."""
    import numpy as np

    from avemo.faces.track import box_stability, iou

    rates = [r["detection_rate"] for r in results]
    stability = [s for s in (box_stability([tuple(b) if b else None for b, d in zip(r["boxes"], r["detected"])
                                            if d]) for r in results) if s is not None]
    out = {"clips": len(results), "detection_rate_mean": round(float(np.mean(rates)), 4),
           "detection_rate_min": round(float(np.min(rates)), 3),
           "clips_all_frames": sum(rate == 1.0 for rate in rates),
           "clips_no_face": sum(rate == 0.0 for rate in rates),
           "box_iou_consecutive": round(float(np.mean(stability)), 4) if stability else None,
           "detector_frames_per_clip": round(float(np.mean([len(r["tracked"]) - sum(r["tracked"])
                                                            for r in results])), 2)}
    if reference is not None:
        pairs = [iou(tuple(a) if a else None, tuple(b) if b else None) for r, q in zip(results, reference)
                 for a, b in zip(r["boxes"], q["boxes"]) if a and b]
        out["box_iou_vs_every_frame_mean"] = round(float(np.mean(pairs)), 4) if pairs else None
        out["box_iou_vs_every_frame_min"] = round(float(np.min(pairs)), 4) if pairs else None
    return out


def crop_steadiness(strips_dir: Path, n_frames: int) -> float:
    """Mean absolute difference between consecutive crops of each clip (lower = steadier), 0-255 scale."""
    import numpy as np

    from avemo.faces.strip import load_strip

    diffs = []
    for strip in sorted(strips_dir.glob("*.jpg")):
        crops = load_strip(strip, n_frames).astype(np.int16)
        diffs.append(float(np.abs(np.diff(crops, axis=0)).mean()))
    return round(float(np.mean(diffs)), 3)


# ------------------------------------------------------------------ clip sets, orchestration, report


def lite_clips(lite: Path, actors: list[int], into: Path) -> list[Path]:
    from avemo.download import ARCHIVE, UnpackResult, unpack_speech_clips

    result = UnpackResult()
    for actor in actors:
        archive = lite / ARCHIVE.format(actor)
        if not archive.exists():
            raise SystemExit(f"{archive}: not found (give --lite or set AVEMO_SHARED)")
        unpack_speech_clips(archive, into, result)
    return sorted(into.glob("*.mp4"))


def machine() -> str:
    import platform

    import av
    import cv2
    import imageio_ffmpeg
    import torch

    from avemo.parallel import available_cpus

    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else []
    return (f"{names[0] if names else platform.machine()}, {available_cpus()} CPUs available, load average "
            f"{os.getloadavg()[0]:.1f} at the start; Python {platform.python_version()}, torch {torch.__version__}, "
            f"OpenCV {cv2.__version__}, PyAV {av.__version__}, ffmpeg {imageio_ffmpeg.get_ffmpeg_version()}")


def bench_set(name: str, clips: list[Path], audio_clips: list[Path], args, scratch: Path, params: dict) -> dict:
    rows, faces_runs = [], {}

    def one(kind: str, items: list[Path], workers: int) -> dict:
        row = run_child(kind, items, workers, scratch / name, args.params)
        row["set"] = name
        rows.append(row)
        print(f"{name}: {kind} x{workers}: {row['clips']} clips in {row['seconds']:.2f} s = "
              f"{row.get('clips_per_s_window', row['clips_per_s']):.2f} clips/s, peak {row['peak_pss_mib']:.0f} MiB",
              flush=True)
        return row

    for workers in args.workers:
        for config in args.configs:
            base = one("ffmpeg-video", clips, workers)  # the bare decode of the same files, just before
            row = one(f"faces:{config}", clips, workers)
            row["startup_s"] = round(row["seconds"] - row["window_s"], 2)
            row["ffmpeg_clips_per_s"] = base["clips_per_s"]
            row["ratio_to_ffmpeg"] = round(row["clips_per_s_window"] / base["clips_per_s"], 3)
            row["ratio_to_ffmpeg_with_startup"] = round(row["clips_per_s"] / base["clips_per_s"], 3)
            row["ffmpeg_cpu_s_per_clip"] = base["cpu_s_per_clip"]
            row["cpu_ratio_to_ffmpeg"] = round(base["cpu_s_per_clip"] / row["cpu_s_per_clip"], 3)
            faces_runs[(config, workers)] = row
        if not args.skip_audio and audio_clips:
            base = one("ffmpeg-audio", audio_clips, workers)
            row = one("extract_audio", audio_clips, workers)
            row["ffmpeg_clips_per_s"] = base["clips_per_s"]
            row["ratio_to_ffmpeg"] = round(row["clips_per_s"] / base["clips_per_s"], 3)
            row["cpu_ratio_to_ffmpeg"] = round(base["cpu_s_per_clip"] / row["cpu_s_per_clip"], 3)
    decode = {}
    if not args.skip_decode:
        for method in ("sampled", "all", "opencv", "seek"):
            for threads in (0, 1):
                row = one(f"decode:{method}:{threads}", clips, 1)
                decode[f"{method}, {'ffmpeg threads' if threads == 0 else '1 thread'}"] = {
                    "clips_per_s": round(row["clips_per_s"], 2), "decoded_frames_per_clip": row["decoded_frames_per_clip"],
                    "cpu_s_per_clip": round(row["cpu_s_per_clip"], 4)}
        base = one("ffmpeg-video", clips, 1)
        for entry in decode.values():
            entry["ratio_to_ffmpeg"] = round(entry["clips_per_s"] / base["clips_per_s"], 3)
            entry["cpu_ratio_to_ffmpeg"] = round(base["cpu_s_per_clip"] / entry["cpu_s_per_clip"], 3)
    features = {}
    first = faces_runs.get(("mtcnn", args.workers[0]))
    if first is not None:
        from avemo.encoders.registry import modality_of

        strips = sorted((scratch / name / "faces_mtcnn" / str(args.workers[0]) / "strips").glob("*.jpg"))
        strips = strips[:args.feature_clips]
        for encoder in args.encoders:
            for threads in (0, 1):  # torch's default (one per core), and one thread
                row = one(f"features:{encoder}:{threads}", strips if modality_of(encoder) == "video"
                          else audio_clips[:args.feature_clips], 1)
                features[f"{encoder}, {row['torch_threads']} torch thread(s)"] = {
                    "ms_per_clip": round(1000 / row["clips_per_s"], 1), "torch_threads": row["torch_threads"]}
    quality_out = {}
    for config in args.configs:
        runs = [faces_runs[(config, w)] for w in args.workers]
        reference = faces_runs.get(("mtcnn_every_frame" if config.startswith("mtcnn") else config, args.workers[0]))
        q = quality(runs[0]["results"], reference["results"] if reference and config != "haar" else None)
        q["crop_abs_diff_consecutive"] = crop_steadiness(
            scratch / name / f"faces_{config}" / str(args.workers[0]) / "strips", params["faces"]["n_frames"])
        q["same_boxes_for_all_worker_counts"] = all(
            [r["boxes"] for r in run["results"]] == [r["boxes"] for r in runs[0]["results"]] for run in runs)
        quality_out[config] = q
    if "haar" in args.configs and "mtcnn_every_frame" in args.configs:
        quality_out["haar"]["box_iou_vs_mtcnn_every_frame_mean"] = quality(
            faces_runs[("haar", args.workers[0])]["results"],
            faces_runs[("mtcnn_every_frame", args.workers[0])]["results"])["box_iou_vs_every_frame_mean"]
    for row in rows:
        row.pop("results", None)
    scaling = {}
    if len(args.workers) > 1:
        low, high = args.workers[0], args.workers[-1]
        for config in args.configs:
            a, b = faces_runs[(config, low)], faces_runs[(config, high)]
            scaling[config] = round(b["clips_per_s_window"] / a["clips_per_s_window"], 2)
    return {"clips": len(clips), "rows": rows, "decode": decode, "features_ms_per_clip": features,
            "quality": quality_out, f"faces_speedup_{args.workers[0]}_to_{args.workers[-1]}_workers": scaling}


def tables(report: dict) -> str:
    lines = ["| clips | step | workers | n | clips/s | ffmpeg bare decode clips/s | ratio | CPU s per clip (ffmpeg) "
             "| CPU ratio | start-up s | peak memory MiB (PSS) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in report["sets"].items():
        for row in result["rows"]:
            if row["kind"].startswith(("faces:", "extract_audio")):
                speed = row.get("clips_per_s_window", row["clips_per_s"])
                ffmpeg_cpu = row.get("ffmpeg_cpu_s_per_clip")
                lines.append(f"| {name} | {row['kind']} | {row['workers']} | {row['clips']} | {speed:.2f} "
                             f"| {row['ffmpeg_clips_per_s']:.2f} | {row['ratio_to_ffmpeg']:.2f} "
                             f"| {row['cpu_s_per_clip']:.3f}" + (f" ({ffmpeg_cpu:.3f})" if ffmpeg_cpu else "") +
                             f" | {row['cpu_ratio_to_ffmpeg']:.2f} | {row.get('startup_s', '')} "
                             f"| {row['peak_pss_mib']:.0f} |")
    lines += ["", "| clips | detector | detection rate (mean / min) | clips with a face in every frame | "
              "box IoU consecutive | box IoU vs detect-every-frame (mean / min) | detector frames per clip | "
              "crop abs diff consecutive |", "|---|---|---|---|---|---|---|---|"]
    for name, result in report["sets"].items():
        for config, q in result["quality"].items():
            versus = (f"{q['box_iou_vs_every_frame_mean']} / {q['box_iou_vs_every_frame_min']}"
                      if "box_iou_vs_every_frame_mean" in q else "")
            lines.append(f"| {name} | {config} | {q['detection_rate_mean']} / {q['detection_rate_min']} "
                         f"| {q['clips_all_frames']} of {q['clips']} | {q['box_iou_consecutive']} | {versus} "
                         f"| {q['detector_frames_per_clip']} | {q['crop_abs_diff_consecutive']} |")
    lines += ["", "| clips | frame sampling | clips/s | ratio to ffmpeg | CPU ratio | frames decoded per clip |",
              "|---|---|---|---|---|---|"]
    for name, result in report["sets"].items():
        for method, d in result["decode"].items():
            lines.append(f"| {name} | {method} | {d['clips_per_s']} | {d['ratio_to_ffmpeg']} | "
                         f"{d['cpu_ratio_to_ffmpeg']} | {d['decoded_frames_per_clip']:.1f} |")
    lines += ["", "| clips | encoder | ms per clip (16 crops, or the audio window) |", "|---|---|---|"]
    for name, result in report["sets"].items():
        for encoder, f in result["features_ms_per_clip"].items():
            lines.append(f"| {name} | {encoder} | {f['ms_per_clip']} |")
    return "\n".join(lines)


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lite", type=Path, default=shared_dir() / "ravdess-lite",
                        help="folder of Video_Speech_Actor_XX.zip (default: $AVEMO_SHARED/ravdess-lite)")
    parser.add_argument("--actors", type=int, nargs="*", default=[1, 2], help="ravdess-lite actors (none: skip lite)")
    parser.add_argument("--hd", type=Path, default=shared_dir() / "ravdess-720p" / "Actor_01",
                        help="folder of 1280x720 originals (every .mp4; audio steps on the 01-* ones)")
    parser.add_argument("--no-hd", action="store_true", help="skip the 720p set")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--skip-audio", action="store_true")
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--encoders", nargs="*", default=["fer", "imagenet"],
                        help="features-stage encoders to time per clip (params.yaml features.video/audio names, "
                             "e.g. fer imagenet whisper logmel; none: skip)")
    parser.add_argument("--feature-clips", type=int, default=40, help="clips per set the encoders are timed on")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"figures (default: {DEFAULT_JSON})")
    parser.add_argument("--_measure", help=argparse.SUPPRESS)
    parser.add_argument("--_list", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())

    if args._measure:  # child: one measurement, one JSON line
        clips = [Path(c) for c in json.loads(args._list.read_text())]
        print(json.dumps(measure(args._measure, clips, args.workers[0], params, args._scratch), default=str))
        return

    started = time.time()
    report = {"machine": machine(), "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M"), "faces_params": params["faces"], "configs": CONFIGS, "sets": {}}
    with tempfile.TemporaryDirectory(prefix="avemo-bench-") as scratch:
        scratch = Path(scratch)
        if not args.no_hd:
            hd = sorted(args.hd.glob("*.mp4"))
            report["sets"]["720p"] = bench_set("720p", hd, [c for c in hd if c.name.startswith("01-")], args,
                                               scratch, params)
        if args.actors:
            clips = lite_clips(args.lite, args.actors, scratch / "lite-clips")
            report["sets"]["lite"] = bench_set("lite", clips, clips, args, scratch, params)
    report["wall_s"] = round(time.time() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print()
    print(tables(report))
    print(f"\nwritten: {args.json} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
