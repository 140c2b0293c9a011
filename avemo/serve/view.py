"""What the page shows of an answer of `avemo predict`: label, calibrated probabilities, the branch that
answered, notes, the model card's accuracy, and a long file's timeline as series to draw. The keys `branch`
and `model_info` are read with .get: older models' answers have neither."""
from __future__ import annotations

from ..protocols import SINGLE_CLIP, SPEAKER_ADAPTED


def accuracy_text(info: dict | None) -> str:
    """'single clip 82.9 %, speaker adapted 88.1 % (5-fold cross-validation)' from a model card, or ''."""
    accuracy = (info or {}).get("accuracy") or {}
    parts = [f"{label} {value * 100:.1f} %" for key, label in ((SINGLE_CLIP, "single clip"),
                                                                  (SPEAKER_ADAPTED, "speaker adapted"))
             if isinstance(value := accuracy.get(key), (int, float))]
    folds = accuracy.get("folds")
    return ", ".join(parts) + (f" ({folds}-fold cross-validation)" if parts and folds else "")


def model_view(answer: dict) -> dict:
    info = answer.get("model_info") or {}
    return {"name": info.get("name") or answer.get("model"), "used": answer.get("used_model"),
            "source": info.get("source"), "data": info.get("data"), "accuracy": accuracy_text(info),
            "warning": info.get("warning")}


def timeline_view(answer: dict) -> dict | None:
    """A long file's windows as chart series: window centres (s) and one probability list per class."""
    rows = answer.get("timeline") or []
    if not rows:
        return None
    classes = list(answer["probabilities"])
    return {"times": [r["time_s"] for r in rows], "labels": [r["label"] for r in rows],
            "series": {c: [r.get(f"p_{c}") for r in rows] for c in classes},
            "window_s": (answer.get("stream") or {}).get("window_s")}


def answer_view(answer: dict) -> dict:
    return {"label": answer["label"], "confidence": answer["confidence"],
            "probabilities": answer["probabilities"], "branch": answer.get("branch") or answer.get("inputs"),
            "protocol": answer.get("protocol") or (SPEAKER_ADAPTED if answer.get("enrolment") else SINGLE_CLIP),
            "mode": answer.get("mode"), "notes": list(answer.get("notes") or []), "model": model_view(answer),
            "seconds": answer.get("seconds"), "enrolment": answer.get("enrolment"),
            "timeline": timeline_view(answer)}


def job_view(status: dict) -> dict:
    """A job's status with each answer made ready to show."""
    answers = status.pop("answers")
    status["answers"] = {key: answer_view(answer) for key, answer in answers.items()}
    return status
