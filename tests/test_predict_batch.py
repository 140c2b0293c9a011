"""`avemo predict` on many files and on awkward real files: folders with a corrupt file, reruns, worker
processes, output paths that would overwrite an input. Real clips, real tiny models trained on the sample
(conftest.trained_models)."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from avemo.errors import StageError
from avemo.predict.batch import RowWriter, error_row, read_done
from avemo.predict.cli import main
from avemo.predict.paths import check_outputs, expand_inputs

from conftest import venv_env

CLIPS = ("01-01-08-02-02-02-01.mp4", "01-01-01-01-01-01-01.mp4")  # surprised and neutral, actor 01, 720p
MODEL = "fer_linear"  # video only: the cheapest of the session's models

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models_dir(trained_models, tmp_path_factory):
    target = tmp_path_factory.mktemp("batch-models")
    for name in ("fer_linear", "whisper_linear"):
        shutil.copyfile(trained_models / f"{name}.pt", target / f"{name}.pt")
    return target


@pytest.fixture
def folder(tmp_path, hd_dir):
    """Two real clips, a corrupt .mp4 (text) and a text file that is not media, in a folder with a subfolder."""
    clips = tmp_path / "clips"
    (clips / "more").mkdir(parents=True)
    shutil.copyfile(hd_dir / CLIPS[0], clips / CLIPS[0])
    shutil.copyfile(hd_dir / CLIPS[1], clips / "more" / CLIPS[1])
    (clips / "broken.mp4").write_text("not a video\n")
    (clips / "readme.txt").write_text("not media\n")
    return clips


def rows_of(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def predict(*args) -> int:
    try:
        main([*map(str, args)])
    except SystemExit as exit:
        return exit.code
    return 0


def test_a_folder_with_a_corrupt_file_gives_one_error_row_and_a_rerun_skips_what_is_done(folder, models_dir,
                                                                                       tmp_path, capsys):
    out = tmp_path / "rows.csv"
    code = predict(folder, "--model", MODEL, "--models-dir", models_dir, "--output", out)
    assert code == 1  # one file failed: the exit code says so, the others are in the file
    rows = {Path(r["input"]).name: r for r in rows_of(out)}
    assert sorted(rows) == sorted([*CLIPS, "broken.mp4"])  # readme.txt is not media
    assert rows["broken.mp4"]["status"] == "error" and "broken.mp4" in rows["broken.mp4"]["error"]
    for name in CLIPS:
        row = rows[name]
        assert row["status"] == "ok" and row["error"] == "" and row["branch"] == "video"
        probs = [float(row[k]) for k in row if k.startswith("p_")]
        assert len(probs) == 8 and abs(sum(probs) - 1) < 1e-3 and float(row["confidence"]) == max(probs)
    assert "2 predicted, 1 failed" in capsys.readouterr().out
    before = out.read_bytes()
    code = predict(folder, "--model", MODEL, "--models-dir", models_dir, "--output", out)
    assert code == 0 and out.read_bytes() == before  # nothing new: every file already has a row
    assert "0 predicted, 0 failed, 3 already in" in capsys.readouterr().out
    (folder / "broken.mp4").unlink()
    shutil.copyfile(folder / CLIPS[0], folder / "broken.mp4")  # repaired: --retry-errors tries it again
    code = predict(folder, "--model", MODEL, "--models-dir", models_dir, "--output", out, "--retry-errors")
    rows = {Path(r["input"]).name: r for r in rows_of(out)}
    assert code == 0 and len(rows_of(out)) == 3 and rows["broken.mp4"]["status"] == "ok"
    assert rows["broken.mp4"]["label"] == rows[CLIPS[0]]["label"]


@pytest.mark.slow
def test_worker_processes_give_the_rows_of_one_process_in_jsonl(folder, models_dir, tmp_path):
    """The console script with --workers 2 (each worker loads the model once): the same answers as one
    process, a JSONL row per file, a progress bar on stderr."""
    single, double = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    predict(folder / "*.mp4", folder / "more", "--model", MODEL, "--models-dir", models_dir, "--output", single)
    run = subprocess.run([Path(sys.executable).parent / "avemo", "predict", folder, "--model", MODEL,
                          "--models-dir", models_dir, "--output", double, "--workers", "2"],
                         capture_output=True, text=True, env=venv_env(), timeout=600)
    assert run.returncode == 1, run.stderr
    assert "3/3" in run.stderr  # tqdm's bar
    one = {r["input"]: r for r in rows_of(single)}
    two = {r["input"]: r for r in rows_of(double)}
    assert sorted(one) == sorted(two) and len(one) == 3
    for name, row in one.items():
        assert row["status"] == two[name]["status"]
        if row["status"] == "ok":
            assert row["probabilities"] == pytest.approx(two[name]["probabilities"], abs=1e-4)
            assert row["label"] == two[name]["label"] and isinstance(row["notes"], list)


def test_a_partial_last_row_of_a_killed_run_is_dropped_and_its_file_done_again(tmp_path):
    out = tmp_path / "rows.csv"
    classes = ["neutral", "happy"]
    writer = RowWriter(out, classes)
    writer.write(error_row(tmp_path / "a.mp4", "a.mp4: broken"))
    writer.close()
    with out.open("a") as handle:
        handle.write(f"{tmp_path / 'b.mp4'},ok,hap")  # killed in the middle of the row
    assert read_done(out)[0] == {str(tmp_path / "a.mp4")}
    writer = RowWriter(out, classes)
    writer.close()
    assert out.read_text().count("\n") == 2 and "b.mp4" not in out.read_text()
    with pytest.raises(StageError, match="columns are not this model's"):
        RowWriter(out, ["neutral", "sad"])


def test_inputs_expand_from_folders_and_globs_once_each(folder):
    found = expand_inputs([str(folder), str(folder / "*.mp4"), str(folder / CLIPS[0])])
    assert [p.name for p in found] == ["01-01-08-02-02-02-01.mp4", "broken.mp4", CLIPS[1]]
    assert expand_inputs([str(folder / "missing.mp4")]) == [folder / "missing.mp4"]  # becomes an error row
    with pytest.raises(StageError, match="no file matches"):
        expand_inputs([str(folder / "*.mov")])
    (folder / "empty").mkdir()
    with pytest.raises(StageError, match="holds no video or audio"):
        expand_inputs([str(folder / "empty")])


def test_output_paths_onto_an_input_or_with_the_wrong_suffix_are_refused(folder, tmp_path, capsys):
    video = folder / CLIPS[0]
    before = video.read_bytes()
    link = tmp_path / "talk.csv"
    link.symlink_to(video)
    hard = tmp_path / "hard.json"
    os.link(video, hard)
    cases = [("--timeline", video, "would overwrite the input"), ("--timeline", link, "would overwrite the input"),
             ("--per-frame", hard, "would overwrite the input"), ("--annotate", video, "would overwrite the input"),
             ("--timeline", tmp_path / "t.mp4", "writes .csv or .json"),
             ("--annotate", tmp_path / "a.avi", "writes .mp4"), ("--plot", tmp_path / "p.csv", "writes .png")]
    for option, path, message in cases:
        assert predict(video, option, path, "--model", "missing_model") == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert predict(folder, "--output", video, "--model", "missing_model") == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert video.read_bytes() == before
    with pytest.raises(StageError, match="given to both --timeline and --per-frame"):
        check_outputs({"--timeline": tmp_path / "x.csv", "--per-frame": tmp_path / "x.csv"}, [])
