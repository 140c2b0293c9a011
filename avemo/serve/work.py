"""One uploaded file through `avemo predict`'s own functions, with the model kept loaded: the clip or stream
mode chosen by the command line's rule, the answer (the dict `avemo predict --json` prints), its rows as the
command line writes them (--timeline), the enrolled answer beside the single-clip one, then the annotated
video. Nothing here predicts by itself: it only calls avemo.predict."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..predict import build_enrolment, predict_clip, run_stream
from ..predict.annotate import annotate_video, clip_annotations, count_frames
from ..predict.batch import RowWriter, result_row
from ..predict.cli import MAX_CLIP_S
from ..predict.output import write_rows
from ..predict.predictor import Predictor
from ..predict.sources import file_seconds
from ..predict.timeline import frame_annotations, frame_rows, summary
from ..protocols import SINGLE_CLIP, SPEAKER_ADAPTED


@dataclass
class Prediction:
    """An answer (the command line's JSON object) and what --annotate needs to draw it."""
    answer: dict
    frames: Callable[[], tuple]  # -> (labels, boxes) of every frame, computed when the video is drawn
    classes: list[str]


def choose_mode(path: Path) -> str:
    """The command line's `--mode auto` for a file: the sliding-window timeline beyond MAX_CLIP_S."""
    return "stream" if file_seconds(path) > MAX_CLIP_S else "clip"


def predict_file(path: Path, predictor: Predictor, models_dir, enrolment=None, on_window=None) -> Prediction:
    """`avemo predict FILE [--enroll ...]` on a loaded model, as the command line runs it; `on_window(Window)`
    follows a long file's windows."""
    if choose_mode(path) == "clip":
        result = predict_clip(path, predictor, None, models_dir, enrolment)
        answer, frames = result.as_dict(), lambda: clip_annotations(result, count_frames(path))
    else:
        result = run_stream(path, predictor, models_dir=models_dir, enrolment=enrolment, detect=True,
                            on_window=on_window)
        rows = frame_rows(result)
        answer, frames = summary(result, rows), lambda: frame_annotations(result, rows)
    if enrolment is not None:
        answer["enrolment"] = enrolment.summary()
    return Prediction(answer, frames, result.classes)


@dataclass
class Outcome:
    answers: dict  # "single_clip" and, with enrolment clips, "speaker_adapted": the command line's JSON
    seconds: float
    pending_video: Prediction | None = None


def analyse(path: Path, predictor: Predictor, models_dir, enrol: list[Path], on_window=None) -> Outcome:
    """The answer for `path` and, when `enrol` names other clips of the person, the adapted one."""
    start = time.perf_counter()
    single = predict_file(path, predictor, models_dir, on_window=on_window)
    answers = {SINGLE_CLIP: single.answer}
    if enrol:
        enrolment = build_enrolment(enrol, predictor, path)
        answers[SPEAKER_ADAPTED] = predict_file(path, predictor, models_dir, enrolment).answer
    return Outcome(answers, time.perf_counter() - start, single)


def write_results(folder: Path, answers: dict, shown: Callable) -> None:
    """result.json: what `avemo predict --json` prints; result.csv: the rows the command line writes, a long
    file's window timeline (--timeline) or a clip's row (--output rows.csv); adapted.* with enrolment.
    `shown` replaces this machine's paths by the client's file names."""
    for key, stem in ((SINGLE_CLIP, "result"), (SPEAKER_ADAPTED, "adapted")):
        if key not in answers:
            continue
        answer = answers[key]
        write_rows(folder / f"{stem}.json", shown(answer))
        if answer.get("timeline"):
            write_rows(folder / f"{stem}.csv", shown(answer["timeline"]))
            continue
        writer = RowWriter(folder / f"{stem}.csv", list(answer["probabilities"]))
        try:
            writer.write(shown(result_row(answer)))
        finally:
            writer.close()


def draw_video(path: Path, prediction: Prediction, out: Path) -> dict:
    """--annotate: box, label and bars drawn on every frame, audio kept."""
    labels, boxes = prediction.frames()
    return annotate_video(path, out, labels, boxes, prediction.classes)
