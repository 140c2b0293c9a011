"""`avemo report`: the committed ravdess-lite summary is what the command writes from the committed fold
summaries, single clip is the headline, and a run on a handful of test clips says its figures mean nothing."""
import json
import shutil
import subprocess
import sys

from avemo.io import read_json
from avemo.report import cv_summary, few_clips_note, fixed_split_table

from conftest import ROOT

RESULTS = ROOT / "docs" / "results" / "ravdess-lite"


def test_the_committed_summary_is_written_by_report_from_the_committed_fold_summaries(tmp_path):
    (tmp_path / "cv").mkdir()
    for path in (RESULTS / "cv").glob("*.json"):
        shutil.copy(path, tmp_path / "cv" / path.name)
    out = tmp_path / "summary.json"
    done = subprocess.run([sys.executable, "-m", "avemo.cli", "report", str(tmp_path), "--summary", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_json(out) == read_json(RESULTS / "summary.json")
    summary = read_json(out)
    assert set(summary["av_late_fusion"]) == {"single_clip", "speaker_adapted"}
    headline = summary["baseline_whisper_fer_imagenet_late_logreg"]["single_clip"]
    assert headline["folds"] == 5 and headline["modality"] == "audio+video"
    folds = [read_json(p) for p in sorted((RESULTS / "cv" / "baseline_whisper_fer_imagenet_late_logreg").glob("fold*.json"))]
    fold_wa = [f["single_clip"]["accuracy"] for f in folds if "single_clip" in f]  # fold 5: no actor of it in the data
    assert len(fold_wa) == 5
    mean = sum(fold_wa) / len(fold_wa)
    std = (sum((x - mean) ** 2 for x in fold_wa) / (len(fold_wa) - 1)) ** 0.5  # sample std, ddof = 1
    assert abs(headline["wa_mean"] - mean) < 1e-3 and abs(headline["wa_std"] - std) < 1e-3


def test_the_fixed_split_table_puts_single_clip_first_and_flags_a_tiny_test_set(tmp_path):
    metrics = {"model": "m", "modality": "audio", "weights": "whisper-base:openai",
               "single_clip": {"accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.4, "n": 16},
               "speaker_adapted": {"accuracy": 0.75, "balanced_accuracy": 0.7, "macro_f1": 0.7, "n": 16}}
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    table = fixed_split_table(tmp_path)
    header, row = table.splitlines()[0], table.splitlines()[2]
    assert header.index("single-clip WA") < header.index("speaker-adapted WA")
    assert row.startswith("| m | audio | 0.500 | 0.500 | 0.400 | 0.750 | 16 |")
    assert "16 test clips" in few_clips_note(tmp_path)
    metrics["single_clip"]["n"] = 240
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    assert few_clips_note(tmp_path) == ""
    assert cv_summary(tmp_path / "absent") == {}


def test_a_missing_or_empty_metrics_directory_is_named_and_no_empty_summary_is_written(tmp_path):
    def report(*args):
        return subprocess.run([sys.executable, "-m", "avemo.cli", "report", *map(str, args)],
                              capture_output=True, text=True, cwd=tmp_path)

    out = tmp_path / "summary.json"
    missing = report(tmp_path / "absent", "--summary", out)
    assert missing.returncode == 1 and f"{tmp_path / 'absent'}: no such metrics directory" in missing.stderr
    (tmp_path / "m.json").write_text("{}")
    no_cv = report(tmp_path, "--summary", out)
    assert no_cv.returncode == 1 and f"{tmp_path / 'cv'}: no cross-validation summaries" in no_cv.stderr
    assert not out.exists()
