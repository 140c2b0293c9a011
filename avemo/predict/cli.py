"""Predict emotions in any video, audio file, camera or stream with a checkpoint from models/.

    avemo predict VIDEO [--model NAME|PATH] [--json] [--annotate OUT.mp4]
                        [--timeline T.csv|.json] [--per-frame F.csv|.json] [--window S] [--hop S]

(also `python -m avemo.predict ...`). Works from any directory: a model name is looked up in
loading.default_models_dir() ($AVEMO_MODELS, else models/ of the avemo project in the current directory,
else of the repository avemo is installed from), a checkpoint path is used as it is.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..errors import StageError
from ..entry import run_stage
from .annotate import annotate_video, clip_annotations, count_frames
from .clip import predict_clip
from .inputs import check_input
from .enrol import build_enrolment
from .loading import default_models_dir, load_predictor
from .output import format_table, write_rows
from .predictor import Predictor
from .sources import file_seconds
from .stream import run_stream
from .timeline import frame_annotations, frame_rows, summary

DEFAULT_MODEL = "baseline_whisper_fer_imagenet_late_logreg"  # the best single-clip model on validation actors (README)
MAX_CLIP_S = 10.0  # `--mode auto`: longer files get the sliding-window timeline


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="avemo predict", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="video or audio file, camera index (0) or stream URL (rtsp://, http://)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="name in --models-dir or a checkpoint path "
                                                               f"(default {DEFAULT_MODEL})")
    parser.add_argument("--models-dir", type=Path,
                        help="where --model NAME is looked up (default: $AVEMO_MODELS, else models/ of the avemo "
                             "project in the current directory, else of the repository avemo is installed from)")
    parser.add_argument("--enroll", nargs="+", metavar="CLIP_OR_DIR",
                        help="other clips of the same person (files or directories): their statistics adapt the "
                             "model to this person (speaker_adapted protocol); default: one clip, single_clip")
    parser.add_argument("--adapt", action="store_true",
                        help="stream mode: standardise each window with the running statistics of the windows "
                             "before it (the person's own, growing as the stream goes on)")
    parser.add_argument("--audio-fallback", metavar="MODEL", help="audio model used when no face is found")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--annotate", type=Path, metavar="OUT.mp4", help="write the video with box and label")
    parser.add_argument("--mode", choices=("auto", "clip", "stream"), default="auto",
                        help=f"clip: one prediction for the file; stream: sliding windows; auto: stream for "
                             f"live input, --timeline/--per-frame, or files over {MAX_CLIP_S:g} s")
    parser.add_argument("--window", type=float, help="window length in s (default: the model's audio duration_s)")
    parser.add_argument("--hop", type=float, default=0.375, help="window hop in s, rounded to the frame grid")
    parser.add_argument("--timeline", type=Path, metavar="FILE", help="window timeline as .csv or .json")
    parser.add_argument("--per-frame", type=Path, metavar="FILE", help="per-frame predictions as .csv or .json")
    parser.add_argument("--aggregate", choices=("vote", "sum"), default="vote",
                        help="frame-level aggregation: majority vote (ties by probability sum) or probability sum")
    parser.add_argument("--live", action="store_true", help="treat a file like a live source (drop frames when "
                                                            "behind, audio read through a pipe)")
    parser.add_argument("--max-seconds", type=float, help="stop live input after this many seconds of video")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the other core decodes; more threads on a busy CPU "
                             "make PyTorch's spinning workers 10-100x slower)")
    args = parser.parse_args(argv)
    args.models_dir = default_models_dir() if args.models_dir is None else args.models_dir
    return args


def is_live_source(text: str) -> bool:
    return text.isdigit() or ("://" in text and not text.startswith("file://"))


def choose_mode(args: argparse.Namespace, live: bool) -> str:
    """auto: stream for live input, a timeline or per-frame output, or a file longer than MAX_CLIP_S."""
    if args.mode == "auto":
        long_file = not live and file_seconds(Path(args.input)) > MAX_CLIP_S
        return "stream" if live or args.timeline or args.per_frame or long_file else "clip"
    if args.mode == "clip" and (live or args.timeline or args.per_frame):
        raise StageError("--mode clip reads a whole file: live input, --timeline and --per-frame need --mode stream")
    return args.mode


def run_clip(args: argparse.Namespace, predictor: Predictor, fallback: Predictor | None, enrolment) -> dict:
    result = predict_clip(args.input, predictor, fallback, args.models_dir, enrolment)
    out = result.as_dict()
    if enrolment is not None:
        out["enrolment"] = enrolment.summary()
    if args.annotate:
        labels, boxes = clip_annotations(result, count_frames(Path(args.input)))
        out["annotated"] = annotate_video(args.input, args.annotate, labels, boxes, result.classes)
    return out


def run_stream_mode(args: argparse.Namespace, predictor: Predictor, fallback: Predictor | None, live: bool,
                    enrolment) -> dict:
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
    if args.per_frame:
        write_rows(args.per_frame, frames)
    if args.annotate:
        labels, boxes = frame_annotations(result, frames)
        out["annotated"] = annotate_video(args.input, args.annotate, labels, boxes, result.classes)
    return out


def run(args: argparse.Namespace) -> dict:
    live = args.live or is_live_source(args.input)
    if is_live_source(args.input):
        if args.annotate:
            raise StageError(f"--annotate needs a video file: {args.input} is live input, which is not stored")
    else:
        check_input(args.input)
    predictor = load_predictor(args.model, args.models_dir)
    fallback = load_predictor(args.audio_fallback, args.models_dir) if args.audio_fallback else None
    if fallback is not None and fallback.kind != "audio":
        raise StageError(f"--audio-fallback {args.audio_fallback}: '{fallback.name}' is {fallback.described}; "
                         "the fallback must use audio only")
    mode = choose_mode(args, live)
    if args.adapt and mode != "stream":
        raise StageError("--adapt accumulates statistics over a stream's windows: it needs --mode stream")
    enrolment = build_enrolment(args.enroll, predictor, None if live else Path(args.input)) if args.enroll else None
    if mode == "clip":
        return run_clip(args, predictor, fallback, enrolment)
    return run_stream_mode(args, predictor, fallback, live, enrolment)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))

    def body():
        result = run(args)
        print(json.dumps(result, indent=2, default=str) if args.json else format_table(result))
        if "annotated" in result and not args.json:
            a = result["annotated"]
            print(f"annotated: {a['path']} ({a['frames']} frames, {a['size'][0]}x{a['size'][1]}, {a['codec']})")

    try:
        run_stage(body)
    except KeyboardInterrupt:  # stream mode stops cleanly by itself; this is the clip mode
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
