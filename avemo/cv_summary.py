"""Cross-validation summaries: mean +- sample std over a model's folds, per protocol, and their table."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ParamError
from .io import read_json, write_json
from .protocols import PROTOCOLS, SINGLE_CLIP, SPEAKER_ADAPTED

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")


def mean_std(values) -> dict:
    """Mean and sample standard deviation (ddof=1, as the literature's fold tables) of the folds' values."""
    values = np.asarray(list(values), dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": round(float(values.mean()), 4), "std": round(std, 4)}


def _protocol_summary(ran: list[dict], protocol: str) -> dict:
    parts = [m[protocol] for m in ran]
    out = {key: mean_std(p[key] for p in parts) for key in SUMMARY_KEYS}
    out["per_class"] = {emotion: {score: mean_std(p["per_class"][emotion][score] for p in parts)
                                  for score in ("recall", "f1")} for emotion in parts[0]["per_class"]}
    for group in ("by_gender", "by_intensity"):
        values = sorted({v for p in parts for v in p[group]})
        out[group] = {v: mean_std(p[group][v]["accuracy"] for p in parts if v in p[group]) for v in values}
    return out


def summarize(fold_metrics: list[dict]) -> dict:
    """Mean +- std over the folds that ran, per protocol: WA, UA, macro-F1, per-emotion recall/F1,
    accuracy by gender and by intensity; the enrolment curve; each fold's figures; skipped folds with
    their reason."""
    ran = [m for m in fold_metrics if "skipped" not in m]
    if not ran:
        raise ParamError("cv: no fold could run (" + "; ".join(m["skipped"] for m in fold_metrics) + ")")
    first = ran[0]
    summary = {"model": first["model"], "scheme": first["scheme"], "folds": len(ran),
               "folds_run": [m["fold"] for m in ran],
               "folds_skipped": {str(m["fold"]): m["skipped"] for m in fold_metrics if "skipped" in m},
               "test_clips": int(sum(m[SINGLE_CLIP]["n"] for m in ran)), "protocol": SINGLE_CLIP,
               "std": "sample standard deviation over folds (ddof=1)", "weights": first.get("weights"),
               "modality": first.get("modality")}
    for protocol in PROTOCOLS:
        summary[protocol] = _protocol_summary(ran, protocol)
    if all("enrolment_curve" in m for m in ran):
        summary["enrolment_curve"] = {k: mean_std(m["enrolment_curve"][k]["accuracy"] for m in ran)
                                      for k in first["enrolment_curve"]}
    summary["per_fold"] = {str(m["fold"]): {p: {key: m[p][key] for key in SUMMARY_KEYS} for p in PROTOCOLS}
                           | {"test_actors": m["test_actors"]} for m in ran}
    return summary


def summarize_dir(folds_dir: Path, out: Path) -> dict:
    files = sorted(Path(folds_dir).glob("fold*.json"), key=lambda p: int(p.stem[4:]))
    if not files:
        raise ParamError(f"{folds_dir}: no fold metrics (fold*.json); run the cv stages first")
    summary = summarize([read_json(p) for p in files])
    write_json(out, summary)
    return summary


def table(cv_dir: str | Path = "metrics/cv") -> str:
    """Markdown table of every cross-validation summary: single clip first (the headline), then speaker adapted."""
    rows = ["| model | scheme | folds | single-clip WA | single-clip UA | speaker-adapted WA (several clips of the "
            "person) | test clips |", "|---|---|---|---|---|---|---|"]
    for path in sorted(Path(cv_dir).glob("*.json")):
        s = read_json(path)
        cell = lambda p, key: f"{s[p][key]['mean']:.3f} ± {s[p][key]['std']:.3f}"  # noqa: E731
        rows.append(f"| {s['model']} | {s['scheme']} | {s['folds']} | {cell(SINGLE_CLIP, 'accuracy')} "
                    f"| {cell(SINGLE_CLIP, 'balanced_accuracy')} | {cell(SPEAKER_ADAPTED, 'accuracy')} "
                    f"| {s['test_clips']} |")
    return "\n".join(rows)
