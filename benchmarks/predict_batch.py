"""Batch throughput of `avemo predict` against the pipeline's own per-clip work, same clips, same workers.

    nice -n 10 .venv/bin/python benchmarks/predict_batch.py [--clips 16] [--workers 2] [--model NAME|PATH]
                                                            [--models-dir DIR] [--source DIR]

pipeline: each clip through the faces stage's crop and the encode stages' per-clip path (crop_faces, the
JPEG strip, every encoder the model reads, extract_audio and the audio window: avemo.preprocess), in a
pool of `workers` processes that each load the encoders once (avemo.parallel, as the stages run).
batch: `avemo predict CLIPS --output rows.csv --workers N` in-process (avemo.predict.batch.run_batch): the
same work plus loading the model in each worker, classifying and writing one CSV row per clip.
Both are timed wall-clock from the pool's start, after a warm-up (the fork server, the files in the page
cache), in the order pipeline, batch, batch, pipeline; the ratio of clips per second, batch / pipeline,
is printed (target >= 0.8). Clips: ravdess-lite's prepared raw clips (/work/scratch/lite/data/raw when present, else
the first archives of ../shared/ravdess-lite unpacked to a temporary folder)."""
from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
import zipfile
from pathlib import Path

_state: dict = {}


def lite_clips(source: Path | None, count: int, scratch: Path) -> list[Path]:
    """`count` clips spread over the actors: prepared raw clips if given or present, else unpacked."""
    shared = Path(os.environ.get("AVEMO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    for folder in [source, Path("/work/scratch/lite/data/raw")]:
        if folder is not None and folder.is_dir():
            clips = sorted(folder.rglob("*.mp4"))
            if clips:
                return clips[::max(1, len(clips) // count)][:count]
    clips = []
    for archive in sorted((shared / "ravdess-lite").glob("Video_Speech_Actor_*.zip")):
        with zipfile.ZipFile(archive) as zipped:
            members = sorted(m for m in zipped.namelist() if m.endswith(".mp4") and "/01-" in f"/{Path(m).name}")
            for member in members[::8][:2]:
                clips.append(Path(zipped.extract(member, scratch)))
        if len(clips) >= count:
            break
    return clips[:count]


def load_for_pipeline(model: str, models_dir: str) -> None:
    from avemo.predict.loading import load_predictor

    _state["predictor"] = load_predictor(model, models_dir)


def pipeline_clip(path: str) -> int:
    """The stages' per-clip work for one clip: faces, then every encoder the model reads."""
    from avemo.predict.inputs import clip_audio, read_audio, read_faces

    predictor = _state["predictor"]
    if predictor.uses_video:
        track, _ = read_faces(Path(path), predictor.faces)
        predictor.video_inputs(track.crops)
    if predictor.uses_audio:
        audio = read_audio(Path(path), predictor.sample_rate)
        predictor.audio_inputs(audio.samples, clip_audio(audio.samples, predictor.prep["audio"])[0])
    return 1


def time_pipeline(clips: list[Path], model: str, models_dir: Path, workers: int) -> float:
    from avemo.parallel import map_clips

    start = time.perf_counter()
    map_clips(pipeline_clip, [str(c) for c in clips], workers, "pipeline", processes=True,
              initializer=functools.partial(load_for_pipeline, model, str(models_dir)),
              preload=("avemo.predict.loading", "avemo.predict.inputs"))
    return time.perf_counter() - start


def time_batch(clips: list[Path], model: str, models_dir: Path, workers: int, out: Path) -> tuple[float, int]:
    from avemo.predict.batch import Job, run_batch
    from avemo.predict.loading import load_predictor

    start = time.perf_counter()
    classes = load_predictor(model, models_dir).classes
    summary = run_batch(clips, Job(model, models_dir), classes, out, workers)
    return time.perf_counter() - start, summary.ok


def main() -> None:
    from avemo.predict.cli import DEFAULT_MODEL
    from avemo.predict.loading import default_models_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--source", type=Path, help="a folder of clips (default: ravdess-lite)")
    args = parser.parse_args()
    models_dir = args.models_dir or default_models_dir()
    with tempfile.TemporaryDirectory(prefix="avemo-bench-") as tmp:
        clips = lite_clips(args.source, args.clips, Path(tmp))
        print(f"{len(clips)} clips, {args.workers} workers, model {args.model}, load {os.getloadavg()[0]:.1f}")
        time_pipeline(clips[:args.workers], args.model, models_dir, args.workers)  # warm-up: fork server, files
        pipeline, batch = [], []
        for order in ("pipeline", "batch", "batch", "pipeline"):  # ABBA: a drifting load hits both alike
            if order == "pipeline":
                pipeline.append(time_pipeline(clips, args.model, models_dir, args.workers))
            else:
                seconds, ok = time_batch(clips, args.model, models_dir, args.workers,
                                         Path(tmp) / f"rows{len(batch)}.csv")
                assert ok == len(clips), f"{len(clips) - ok} clips failed in the batch"
                batch.append(seconds)
    for name, runs in (("pipeline (faces + encoders)", pipeline), ("avemo predict batch", batch)):
        print(f"{name:<28} {' / '.join(f'{t:.1f}' for t in runs)} s, {2 * len(clips) / sum(runs):.2f} clips/s")
    print(f"ratio batch / pipeline: {sum(pipeline) / sum(batch):.2f}x (load after {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
