"""The model tables of the metrics files, single clip first: `avemo report [METRICS_DIR] [--summary FILE]`.

The headline is single_clip (one clip of an unseen person, what `predict` does); speaker_adapted needs
several clips of the person (statistics of their other clips) and is the second column. `--summary`
writes {model: {protocol: {wa_mean, wa_std, ua_mean, folds, modality}}} from the cross-validation summaries."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .io import read_json, write_json
from .modality import combined
from .protocols import PROTOCOLS, SINGLE_CLIP, SPEAKER_ADAPTED

FEW_TEST_CLIPS = 100  # below this a fixed-split accuracy moves by more than 0.05 with one or two clips


def few_clips_note(metrics_dir: Path) -> str:
    sizes = [read_json(p)[SINGLE_CLIP]["n"] for p in Path(metrics_dir).glob("*.json")
             if SINGLE_CLIP in read_json(p)]
    if not sizes or max(sizes) >= FEW_TEST_CLIPS:
        return ""
    return (f"\nNote: {max(sizes)} test clips. These figures only show that the pipeline runs (one clip moves "
            f"them by {1 / max(sizes):.3f}); real ones come from the full data or a mirror: `avemo profile headline && "
            "dvc exp run -S data.source=mirror -S data.mirror=PATH_OR_URL` (README, first lines).\n")


def _modality(m: dict, metrics_dir: Path) -> str:
    if m.get("modality"):
        return m["modality"]
    members = {name for p in PROTOCOLS for name in m.get(p, {}).get("members", {})}  # the ensemble
    found = [read_json(metrics_dir / f"{name}.json").get("modality", "none") for name in members
             if (metrics_dir / f"{name}.json").is_file()]
    return combined(found) if found else "?"


def fixed_split_table(metrics_dir: str | Path = "metrics") -> str:
    metrics_dir = Path(metrics_dir)
    rows = ["| model | modality | single-clip WA | single-clip UA | macro-F1 | speaker-adapted WA (several clips "
            "of the person) | test clips | weights |", "|---|---|---|---|---|---|---|---|"]
    for path in sorted(metrics_dir.glob("*.json")):
        m = read_json(path)
        if SINGLE_CLIP not in m:
            continue
        one, adapted = m[SINGLE_CLIP], m[SPEAKER_ADAPTED]
        weights = m.get("weights", "")
        weights = ", ".join(sorted(set(weights.values()))) if isinstance(weights, dict) else weights
        rows.append(f"| {m['model']} | {_modality(m, metrics_dir)} | {one['accuracy']:.3f} | {one['balanced_accuracy']:.3f} "
                    f"| {one['macro_f1']:.3f} | {adapted['accuracy']:.3f} | {one['n']} | {weights} |")
    return "\n".join(rows)


def cv_summary(cv_dir: str | Path) -> dict:
    """{model: {protocol: {wa_mean, wa_std, ua_mean, folds, modality}}} of every cross-validation summary."""
    out = {}
    for path in sorted(Path(cv_dir).glob("*.json")):
        s = read_json(path)
        out[s["model"]] = {p: {"wa_mean": s[p]["accuracy"]["mean"], "wa_std": s[p]["accuracy"]["std"],
                               "ua_mean": s[p]["balanced_accuracy"]["mean"], "folds": s["folds"],
                               "modality": s.get("modality")} for p in PROTOCOLS}
    return out


def check_inputs(metrics_dir: Path, cv_dir: Path, summary: Path | None) -> str:
    """Why the report cannot be made (empty when it can): never print an empty table or write an empty summary."""
    if not metrics_dir.is_dir():
        return f"{metrics_dir}: no such metrics directory (run `dvc repro` first, or name the directory)"
    if summary and not any(cv_dir.glob("*.json")):
        return f"{cv_dir}: no cross-validation summaries to write {summary} from (a profile with `cv`, e.g. headline)"
    if not any(metrics_dir.glob("*.json")) and not any(cv_dir.glob("*.json")):
        return f"{metrics_dir}: no metrics files (*.json, cv/*.json)"
    return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="avemo report", description=__doc__.split("\n")[0])
    parser.add_argument("metrics_dir", nargs="?", type=Path, default=Path("metrics"))
    parser.add_argument("--summary", type=Path, help="write the cross-validation summary JSON here")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cv_dir = args.metrics_dir / "cv"
    problem = check_inputs(args.metrics_dir, cv_dir, args.summary)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    table = fixed_split_table(args.metrics_dir)
    if table.count("\n") > 1:
        print(f"Fixed split ({args.metrics_dir}); single clip is the headline:\n\n{table}")
        print(few_clips_note(args.metrics_dir))
    if any(cv_dir.glob("*.json")):
        from .cv_summary import table as cv_table

        print(f"\nSpeaker-independent cross-validation (mean ± sample std over folds):\n\n{cv_table(cv_dir)}")
    if args.summary:
        write_json(args.summary, cv_summary(cv_dir))
        print(f"\nwrote {args.summary}")
