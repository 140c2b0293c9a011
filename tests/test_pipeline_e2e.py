"""The real pipeline under DVC on a tiny slice of the embedded sample: repro, no-op repro, targeted rerun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import sample_project, write_params

ACTORS = ["01", "02", "13", "14", "17", "18"]  # both genders in every split (gender-specific models)


def dvc(project: Path, *args) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, text=True,
                          capture_output=True)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("project")
    params = sample_project(project, ACTORS)
    params["split"] = {"test_actors": [17, 18], "val_actors": [13, 14]}
    params["train_defaults"].update(epochs=2, patience=2)
    params["cv"].update(models=["logmel_cnn", "video_lstm"], val_actors=2)
    params["baselines"]["grids"]["gbt"]["max_iter"] = [5]  # trees: the stage runs, briefly
    write_params(project, params)
    dvc(project, "init", "--no-scm", "-q")
    return project


def test_repro_builds_every_stage_then_does_nothing(project):
    log = dvc(project, "repro")
    for stage in ("download", "extract_audio", "faces", "features", "train@fusion_concat", "evaluate@video_lstm"):
        assert f"Running stage '{stage}'" in log
    female = json.loads((project / "metrics" / "video_lstm_female.json").read_text())
    assert female["test_actors"] == [18] and female["n"] == 8
    for model in ("logmel_cnn", "video_lstm", "fusion_concat"):
        metrics = json.loads((project / "metrics" / f"{model}.json").read_text())
        assert metrics["n"] == 16 and 0 <= metrics["accuracy"] <= 1
        assert metrics["weights"] == "mobilenet_v2:random-init" and metrics["test_actors"] == [17, 18]
        assert metrics["by_gender"]["male"]["n"] == 8 and set(metrics["by_intensity"]) <= {"normal", "strong"}
        assert (project / "metrics/plots" / model / "confusion.png").stat().st_size > 1000
        assert (project / "models" / f"{model}.pt").exists()
    ensemble = json.loads((project / "metrics" / "ensemble.json").read_text())
    candidates = yaml.safe_load((project / "params.yaml").read_text())["ensemble"]["candidates"]
    assert ensemble["n"] == 16 and ensemble["test_actors"] == [17, 18] and ensemble["val_actors"] == [13, 14]
    assert set(ensemble["members"]) <= set(candidates) and abs(sum(ensemble["members"].values()) - 1) < 1e-3
    for name in candidates:  # every candidate's evaluate / baselines stage wrote val and test probabilities
        rows = (project / "metrics" / "predictions" / f"{name}.csv").read_text().splitlines()
        assert len(rows) == 1 + 32 and rows[0].startswith("clip,split,p_neutral")
    meta = (project / "data/raw/metadata.csv").read_text().splitlines()
    assert len(meta) == 49 and meta[0].startswith("clip_id,modality,vocal_channel,emotion")
    cv = json.loads((project / "metrics/cv/video_lstm.json").read_text())
    assert cv["scheme"] == "sequential_6x4" and cv["folds_run"] == [0, 3, 4]  # folds with actors in the data
    assert sorted(cv["folds_skipped"]) == ["1", "2", "5"] and cv["test_clips"] == 48
    assert [cv["per_fold"][f]["test_actors"] for f in ("0", "3", "4")] == [[1, 2], [13, 14], [17, 18]]
    assert 0 <= cv["accuracy"]["mean"] <= 1 and cv["accuracy"]["std"] >= 0
    for fold in (0, 3, 4):
        m = json.loads((project / f"metrics/cv/video_lstm/fold{fold}.json").read_text())
        assert len(m["val_actors"]) == 2 and not set(m["val_actors"]) & set(m["test_actors"])
        assert (project / f"models/cv/video_lstm/fold{fold}/model.pt").exists()
    assert "Running stage" not in dvc(project, "repro")


def test_changing_one_models_rate_reruns_only_that_model(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["video_lstm"]["train"]["lr"] = 0.002
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(project, "status")
    assert "train@video_lstm" in status and "faces" not in status and "train@logmel_cnn" not in status
    log = dvc(project, "repro")
    ran = sorted(line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage"))
    required = {"train@video_lstm", "evaluate@video_lstm"} | {f"cv_fold@video_lstm-{fold}" for fold in range(6)}
    # downstream stages rerun only when what they read changed: the CV summary when a fold's metrics did
    # (on this tiny slice they may come out the same), the ensemble when a predictions file did (it
    # depends on the whole metrics/predictions directory: DVC cannot make deps of a params list)
    downstream = {"cv_summary@video_lstm", "ensemble"}
    assert required <= set(ran) <= required | downstream, ran
    shown = dvc(project, "metrics", "show")
    assert "metrics/video_lstm.json" in shown and "metrics/fusion_concat.json" in shown


def test_stage_error_names_the_bad_parameter(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["features"]["backbone"] = "alexnet9"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = subprocess.run([sys.executable, "stages/features.py", "--faces", "data/faces", "--audio", "data/audio",
                           "--out", "/tmp/unused-features"], cwd=project, text=True, capture_output=True)
    assert done.returncode == 1
    assert "features.backbone: 'alexnet9' is not valid; choose one of: mobilenet_v2, resnet18" in done.stderr
    assert "Traceback" not in done.stderr
