"""Predict emotions in video and audio files, directories of them, a camera or a stream.

    avemo predict INPUT [INPUT ...] [--output ROWS.csv|.jsonl] [--workers N] [--model NAME|PATH] [--json]
    avemo predict VIDEO [--annotate OUT.mp4] [--timeline T.csv|.json [--plot [T.png]]] [--per-frame F.csv|.json]
                        [--window S] [--hop S] [--enroll CLIPS...]

(also `python -m avemo.predict ...`). INPUTs are files, directories (their video and audio files, recursively)
and glob patterns; one file without --output prints a table (or JSON), more files or --output give one row
per file (docs/predict.md). Works from any directory: a model name is looked up in
loading.default_models_dir() ($AVEMO_MODELS, else models/ of the avemo project in the current directory,
else of the repository avemo is installed from), a checkpoint path is used as it is. Heavy libraries (torch,
OpenCV, the encoders) are imported only when a file is predicted, so `--help` and argument errors are quick.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import StageError
from .paths import check_outputs, expand_inputs

DEFAULT_MODEL = "release"  # = loading.RELEASE: the model shipped inside the package (docs/release.md)
MAX_CLIP_S = 10.0  # `--mode auto`: longer files get the sliding-window timeline
SINGLE_FILE_OPTIONS = ("annotate", "timeline", "per_frame", "plot", "enroll", "adapt", "live", "max_seconds")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="avemo predict", description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video or audio files, directories of them, glob patterns ('clips/*.mp4'); "
                             "or one camera index (0) or stream URL (rtsp://, http://)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="'release' (the default: the model shipped with "
                                                               "avemo), a name in --models-dir, a checkpoint path "
                                                               "or a model directory")
    parser.add_argument("--models-dir", type=Path,
                        help="where --model NAME is looked up (default: $AVEMO_MODELS, else models/ of the avemo "
                             "project in the current directory, else of the repository avemo is installed from)")
    parser.add_argument("--output", type=Path, metavar="ROWS.csv|.jsonl",
                        help="one row per file, written as each is done (label, probabilities, branch, notes or "
                             "the error); a rerun with the same file skips the files it holds")
    parser.add_argument("--retry-errors", action="store_true",
                        help="with --output: drop its error rows first, so that those files are tried again")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes for many files, each loading the model once (default 1)")
    parser.add_argument("--enroll", nargs="+", metavar="CLIP_OR_DIR",
                        help="other clips of the same person (files or directories): their statistics adapt the "
                             "model to this person (speaker_adapted protocol); default: one clip, single_clip")
    parser.add_argument("--adapt", action="store_true",
                        help="stream mode: standardise each window with the running statistics of the windows "
                             "before it (the person's own, growing as the stream goes on)")
    parser.add_argument("--audio-fallback", metavar="MODEL", help="audio model used when no face is found")
    parser.add_argument("--json", action="store_true",
                        help="print JSON instead of the table (one object per line for many files)")
    parser.add_argument("--annotate", type=Path, metavar="OUT.mp4", help="write the video with box and label")
    parser.add_argument("--mode", choices=("auto", "clip", "stream"), default="auto",
                        help=f"clip: one prediction for the file; stream: sliding windows; auto: stream for "
                             f"live input, --timeline/--per-frame, or files over {MAX_CLIP_S:g} s")
    parser.add_argument("--window", type=float, help="window length in s (default: the model's audio duration_s)")
    parser.add_argument("--hop", type=float, default=0.375, help="window hop in s, rounded to the frame grid")
    parser.add_argument("--timeline", type=Path, metavar="FILE", help="window timeline as .csv or .json")
    parser.add_argument("--plot", nargs="?", const=True, metavar="FILE.png",
                        help="stream mode: a picture of the probabilities over time (default: the --timeline "
                             "path with .png)")
    parser.add_argument("--per-frame", type=Path, metavar="FILE", help="per-frame predictions as .csv or .json")
    parser.add_argument("--aggregate", choices=("vote", "sum"), default="vote",
                        help="frame-level aggregation: majority vote (ties by probability sum) or probability sum")
    parser.add_argument("--live", action="store_true", help="treat a file like a live source (drop frames when "
                                                            "behind, audio read through a pipe)")
    parser.add_argument("--max-seconds", type=float, help="stop live input after this many seconds of video")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per worker (default 1: the other core decodes; more threads on a "
                             "busy CPU make PyTorch's spinning workers 10-100x slower)")
    args = parser.parse_args(argv)
    if args.models_dir is None:
        from .loading import default_models_dir

        args.models_dir = default_models_dir()
    return args


def is_live_source(text: str) -> bool:
    return text.isdigit() or ("://" in text and not text.startswith("file://"))


def plot_path(args: argparse.Namespace) -> Path | None:
    """--plot FILE, or --plot alone: the timeline's path with .png (a stream's picture needs a timeline)."""
    if args.plot is None:
        return None
    if args.plot is True:
        if args.timeline is None:
            raise StageError("--plot without a file name goes next to the timeline: add --timeline T.csv, or "
                             "give --plot FILE.png")
        return args.timeline.with_suffix(".png")
    return Path(args.plot)


def choose_mode(args: argparse.Namespace, live: bool) -> str:
    """auto: stream for live input, a timeline or per-frame output, or a file longer than MAX_CLIP_S."""
    from .sources import file_seconds

    if args.mode == "auto":
        long_file = not live and file_seconds(Path(args.input)) > MAX_CLIP_S
        return "stream" if live or args.timeline or args.per_frame or args.plot or long_file else "clip"
    if args.mode == "clip" and (live or args.timeline or args.per_frame or args.plot):
        raise StageError("--mode clip reads a whole file: live input, --timeline, --plot and --per-frame need "
                         "--mode stream")
    return args.mode


def run_clip(args: argparse.Namespace, predictor, fallback, enrolment) -> dict:
    from .annotate import annotate_video, clip_annotations, count_frames
    from .clip import predict_clip

    result = predict_clip(args.input, predictor, fallback, args.models_dir, enrolment)
    out = result.as_dict()
    if enrolment is not None:
        out["enrolment"] = enrolment.summary()
    if args.annotate:
        labels, boxes = clip_annotations(result, count_frames(Path(args.input)))
        out["annotated"] = annotate_video(args.input, args.annotate, labels, boxes, result.classes)
    return out


def run_stream_mode(args: argparse.Namespace, predictor, fallback, live: bool, enrolment) -> dict:
    from .annotate import annotate_video
    from .output import write_rows
    from .stream import run_stream
    from .timeline import frame_annotations, frame_rows, summary

    printer = None if args.json else (lambda w: print(w.line(), flush=True))
    result = run_stream(args.input, predictor, window_s=args.window, hop_s=args.hop, fallback=fallback,
                        live=live, detect=bool(args.annotate) or None, on_window=printer,
                        max_seconds=args.max_seconds, models_dir=args.models_dir, enrolment=enrolment,
                        adapt=args.adapt)
    frames = frame_rows(result)
    out = summary(result, frames, args.aggregate)
    if enrolment is not None:
        out["enrolment"] = enrolment.summary()
    if args.timeline:
        write_rows(args.timeline, [w.row(result.classes) for w in result.windows])
    if args.plot_path:
        from .plot import plot_timeline

        out["plot"] = str(plot_timeline(result, args.plot_path))
    if args.per_frame:
        write_rows(args.per_frame, frames)
    if args.annotate:
        labels, boxes = frame_annotations(result, frames)
        out["annotated"] = annotate_video(args.input, args.annotate, labels, boxes, result.classes)
    return out


def load_models(args: argparse.Namespace):
    from .loading import load_predictor

    predictor = load_predictor(args.model, args.models_dir)
    fallback = load_predictor(args.audio_fallback, args.models_dir) if args.audio_fallback else None
    if fallback is not None and fallback.kind != "audio":
        raise StageError(f"--audio-fallback {args.audio_fallback}: '{fallback.name}' is {fallback.described}; "
                         "the fallback must use audio only")
    return predictor, fallback


def run(args: argparse.Namespace) -> dict:
    """One input (a file, camera or URL): the table or JSON of clip or stream mode."""
    from .inputs import check_input

    live = args.live or is_live_source(args.input)
    if is_live_source(args.input):
        if args.annotate:
            raise StageError(f"--annotate needs a video file: {args.input} is live input, which is not stored")
    else:
        check_input(args.input)
    args.plot_path = plot_path(args)
    sources = [] if is_live_source(args.input) else [Path(args.input)]
    check_outputs({"--annotate": args.annotate, "--timeline": args.timeline, "--per-frame": args.per_frame,
                   "--plot": args.plot_path}, sources)
    predictor, fallback = load_models(args)
    mode = choose_mode(args, live)
    if args.adapt and mode != "stream":
        raise StageError("--adapt accumulates statistics over a stream's windows: it needs --mode stream")
    enrolment = None
    if args.enroll:
        from .enrol import build_enrolment

        enrolment = build_enrolment(args.enroll, predictor, None if live else Path(args.input))
    if mode == "clip":
        return run_clip(args, predictor, fallback, enrolment)
    return run_stream_mode(args, predictor, fallback, live, enrolment)


def batch_line(row: dict) -> str:
    if row["status"] != "ok":
        return f"error: {row['error']}"
    notes = f"  ({'; '.join(row['notes'])})" if row["notes"] else ""
    return f"{row['input']}: {row['label']} {row['confidence']:.3f} [{row['branch']}]{notes}"


def run_many(args: argparse.Namespace, files: list[Path]) -> int:
    """Many files (or --output): one row each, as it is done; returns the exit code (1 if any failed)."""
    from .batch import Job, drop_error_rows, run_batch

    used = [name for name in SINGLE_FILE_OPTIONS if getattr(args, name)]
    if used:
        raise StageError(f"--{used[0].replace('_', '-')} works on one input; {len(files)} files given")
    if args.mode == "stream":
        raise StageError("--mode stream works on one input; many files are predicted in clip mode")
    if args.workers < 1:
        raise StageError(f"--workers {args.workers}: give a whole number >= 1")
    check_outputs({"--output": args.output}, files)
    if args.retry_errors and args.output is not None:
        drop_error_rows(args.output)
    if args.output is not None and args.output.exists():
        from .batch import input_key, read_done

        done = read_done(args.output)[0]
        if all(input_key(f) in done for f in files):  # nothing to do: no model to load
            print(f"0 predicted, 0 failed, {len(files)} already in {args.output}")
            return 0
    predictor, _ = load_models(args)  # fails early for a bad model, and gives the classes of the rows
    job = Job(args.model, args.models_dir, args.audio_fallback, args.threads)
    if args.output is None:
        printer = (lambda row: print(json.dumps(row, default=str), flush=True)) if args.json else \
            (lambda row: print(batch_line(row), flush=True))
    else:
        printer = None
    summary = run_batch(files, job, predictor.classes, args.output, args.workers, on_row=printer,
                        progress=args.output is not None)
    text = (f"{summary.ok} predicted, {len(summary.errors)} failed, {summary.skipped} already in "
            f"{args.output}" if args.output else f"{summary.ok} predicted, {len(summary.errors)} failed")
    print(text, file=sys.stderr if args.json or args.output is None else sys.stdout)
    return 1 if summary.errors else 0


def main(argv=None) -> None:
    args = parse_args(argv)
    from ..entry import run_stage

    def body():
        one = len(args.inputs) == 1 and is_live_source(args.inputs[0])
        files = [] if one else expand_inputs(args.inputs)
        if one or (len(files) == 1 and args.output is None and files[0] == Path(args.inputs[0])):
            import torch

            torch.set_num_threads(max(1, args.threads))
            args.input = args.inputs[0]
            result = run(args)
            print(json.dumps(result, indent=2, default=str) if args.json else format_result(result))
            if args.json and (result.get("model_info") or {}).get("warning"):
                print(f"warning: {result['model_info']['warning']}", file=sys.stderr)
            return
        code = run_many(args, files)
        if code:
            sys.exit(code)

    try:
        run_stage(body)
    except KeyboardInterrupt:  # stream mode stops cleanly by itself; this is the clip mode
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def format_result(result: dict) -> str:
    from .output import format_table

    text = format_table(result)
    if "annotated" in result:
        a = result["annotated"]
        text += f"\nannotated: {a['path']} ({a['frames']} frames, {a['size'][0]}x{a['size'][1]}, {a['codec']})"
    if "plot" in result:
        text += f"\nplot: {result['plot']}"
    return text


if __name__ == "__main__":
    main()
