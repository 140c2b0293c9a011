"""One uploaded file through `avemo predict`'s own functions, with the model kept loaded: the clip or stream
mode chosen by the command line's rule, the answer (the dict `avemo predict --json` prints), its rows as the
command line writes them (--timeline), the enrolled answer beside the single-clip one, then the annotated
video. Nothing here predicts by itself: it only calls avemo.predict."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..predict import build_enrolment, predict_clip, run_stream
from ..predict.annotate import annotate_video, clip_annotations, count_frames
from ..predict.cli import MAX_CLIP_S
from ..predict.output import write_rows
from ..predict.predictor import Predictor
from ..predict.sources import file_seconds
from ..predict.timeline import frame_annotations, frame_rows, summary


@dataclass
class Prediction:
    """An answer (the command line's JSON object) and what --annotate needs to draw it."""
    answer: dict
    draw: tuple  # (labels, boxes) of every frame
    classes: list[str]


def choose_mode(path: Path) -> str:
    """The command line's `--mode auto` for a file: the sliding-window timeline beyond MAX_CLIP_S."""
    return "stream" if file_seconds(path) > MAX_CLIP_S else "clip"


def predict_file(path: Path, predictor: Predictor, models_dir, enrolment=None) -> Prediction:
    """`avemo predict FILE [--enroll ...]` on a loaded model, as the command line runs it."""
    if choose_mode(path) == "clip":
        result = predict_clip(path, predictor, None, models_dir, enrolment)
        answer, draw = result.as_dict(), clip_annotations(result, count_frames(path))
    else:
        result = run_stream(path, predictor, models_dir=models_dir, enrolment=enrolment, detect=True)
        frames = frame_rows(result)
        answer, draw = summary(result, frames), frame_annotations(result, frames)
    if enrolment is not None:
        answer["enrolment"] = enrolment.summary()
    return Prediction(answer, draw, result.classes)


def rows_of(answer: dict) -> list[dict]:
    """The rows the command line writes: the window timeline (--timeline) of a long file, else the clip's
    one row of label, probabilities, branch and notes."""
    if answer.get("timeline"):
        return answer["timeline"]
    return [{"input": answer["input"], "model": answer["model"], "label": answer["label"],
             "confidence": answer["confidence"], "branch": answer.get("branch", answer.get("inputs")),
             **{f"p_{c}": p for c, p in answer["probabilities"].items()},
             "notes": "; ".join(answer.get("notes", []))}]


@dataclass
class Outcome:
    answers: dict  # "single_clip" and, with enrolment clips, "speaker_adapted": the command line's JSON
    seconds: float
    pending_video: Prediction | None = None


def analyse(path: Path, predictor: Predictor, models_dir, enrol: list[Path]) -> Outcome:
    """The answer for `path` and, when `enrol` names other clips of the person, the adapted one."""
    start = time.perf_counter()
    single = predict_file(path, predictor, models_dir)
    answers = {"single_clip": single.answer}
    if enrol:
        enrolment = build_enrolment(enrol, predictor, path)
        answers["speaker_adapted"] = predict_file(path, predictor, models_dir, enrolment).answer
    return Outcome(answers, time.perf_counter() - start, single)


def write_results(folder: Path, answers: dict) -> None:
    """result.json (what `avemo predict --json` prints) and result.csv (its rows); adapted.* with enrolment."""
    for key, stem in (("single_clip", "result"), ("speaker_adapted", "adapted")):
        if key in answers:
            write_rows(folder / f"{stem}.json", answers[key])
            write_rows(folder / f"{stem}.csv", rows_of(answers[key]))


def draw_video(path: Path, prediction: Prediction, out: Path) -> dict:
    """--annotate: box, label and bars drawn on every frame, audio kept."""
    labels, boxes = prediction.draw
    return annotate_video(path, out, labels, boxes, prediction.classes)
