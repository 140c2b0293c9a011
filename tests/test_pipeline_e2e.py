"""The real pipeline under DVC on a tiny slice of the embedded sample (4 actors, 4 face crops of 48 px, 2 epochs):
a target reruns only what it depends on, a full repro builds every stage of the profile and then does
nothing, and a parameter change reruns exactly the stages downstream of it (video side / audio side)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import sample_project, venv_env, write_params

pytestmark = pytest.mark.slow

ACTORS = ["01", "02", "13", "17"]  # train 01 + 02, validation 13, test 17
PROFILE = {  # a video, an audio and an audio-visual model on pretrained encoders, a log-mel CNN trained from scratch
    "models": ["whisper_linear", "fer_linear", "av_late_fusion", "logmel_cnn"],
    "baselines": ["whisper_fer-late_logreg"],
    "ensemble": ["whisper_linear", "fer_linear", "whisper_fer-late_logreg"],
    "cv": {"models": ["fer_linear"], "baselines": [], "folds": [0, 1, 4]},
}
BASELINE = "baselines@whisper_fer-late_logreg"
ENSEMBLE_UPSTREAM = {"download", "extract_audio", "faces", "encode_video@fer", "encode_audio@whisper",
                     "train@whisper_linear", "evaluate@whisper_linear", "train@fer_linear", "evaluate@fer_linear",
                     BASELINE, "ensemble"}
REST = {"encode_audio@logmel", "train@av_late_fusion", "evaluate@av_late_fusion", "train@logmel_cnn",
        "evaluate@logmel_cnn", "cv_fold@fer_linear-0", "cv_fold@fer_linear-1", "cv_fold@fer_linear-4",
        "cv_summary@fer_linear"}


def dvc(project: Path, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=venv_env(), text=True,
                          capture_output=True, timeout=1800)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}"
    return done.stdout + done.stderr


def ran(log: str) -> set[str]:
    """The stages a `dvc repro` ran (or restored from DVC's run cache, which it says too)."""
    return {line.split("'")[1] for line in log.splitlines()
            if line.startswith("Running stage '") or "is cached - skipping run" in line}


def changed_stages(project: Path) -> set[str]:
    """`dvc status`: the stages whose own dependencies or parameters changed since they ran."""
    done = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=project, env=venv_env(), text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def edit_params(project: Path, edit) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    edit(params)
    write_params(project, params)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("project")
    params = sample_project(project, ACTORS)
    params["split"] = {"test_actors": [17], "val_actors": [13]}
    params["train_defaults"].update(epochs=2, patience=2)
    params["cv"].update(val_actors=1)
    params["baselines"].update(cv_folds=2, grids={**params["baselines"]["grids"], "logreg": {"C": [0.01, 1.0]}})
    params["profiles"]["tiny"] = PROFILE
    write_params(project, params)
    done = subprocess.run([sys.executable, "-m", "avemo.cli", "profile", "tiny"], cwd=project, env=venv_env(),
                          text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "profile 'tiny': 4 models, 1 baselines, 3 cross-validation folds, ensemble of 3" in done.stdout
    dvc(project, "init", "--no-scm", "-q")
    return project


def test_repro_of_the_ensemble_runs_only_its_candidates_stages(project):
    """On a fresh copy `dvc repro ensemble` runs the candidates' stages and what they read: not the
    log-mel encoder, nor the models and folds that are no candidate."""
    log = dvc(project, "repro", "ensemble")
    assert ran(log) == ENSEMBLE_UPSTREAM, sorted(ran(log))
    assert not (project / "data/features/logmel").exists() and not (project / "models/logmel_cnn.pt").exists()
    ensemble = json.loads((project / "metrics/ensemble.json").read_text())
    assert ensemble["test_actors"] == [17]
    for protocol in ("single_clip", "speaker_adapted"):
        members = ensemble[protocol]["members"]
        assert ensemble[protocol]["n"] == 8 and abs(sum(members.values()) - 1) < 1e-3
        assert set(members) <= {"whisper_linear", "fer_linear", "baseline_whisper_fer_late_logreg"}


def test_repro_builds_every_stage_then_does_nothing(project):
    log = dvc(project, "repro")
    assert ran(log) == REST, sorted(ran(log))
    for model, modality, weights in (("whisper_linear", "audio", {"whisper": "whisper-base:openai"}),
                                     ("fer_linear", "video", {"fer": "mini_xception:fer2013"}),
                                     ("av_late_fusion", "audio+video", {"whisper": "whisper-base:openai",
                                                                        "fer": "mini_xception:fer2013"}),
                                     ("logmel_cnn", "audio", {"logmel": "none"})):
        metrics = json.loads((project / "metrics" / f"{model}.json").read_text())
        assert metrics["protocol"] == "single_clip" and metrics["modality"] == modality
        assert metrics["weights"] == weights and metrics["test_actors"] == [17]
        for protocol in ("single_clip", "speaker_adapted"):
            assert metrics[protocol]["n"] == 8 and 0 <= metrics[protocol]["accuracy"] <= 1
            assert metrics[protocol]["by_gender"]["male"]["n"] == 8
            assert set(metrics[protocol]["by_intensity"]) <= {"normal", "strong"}
        assert set(metrics["enrolment_curve"]) == {"1", "2", "4", "8", "16", "all"}
        assert (project / "metrics/plots" / model / "confusion.png").stat().st_size > 1000
        assert (project / "models" / f"{model}.pt").exists()
        rows = (project / "metrics/predictions" / f"{model}.csv").read_text().splitlines()
        assert rows[0].startswith("clip,split,protocol,p_neutral") and len(rows) == 1 + 2 * (8 + 8)
    meta = (project / "data/raw/metadata.csv").read_text().splitlines()
    assert len(meta) == 33 and meta[0].startswith("clip_id,modality,vocal_channel,emotion")
    cv = json.loads((project / "metrics/cv/fer_linear.json").read_text())
    assert cv["scheme"] == "sequential_6x4" and cv["folds_run"] == [0, 4] and list(cv["folds_skipped"]) == ["1"]
    assert cv["test_clips"] == 24 and [cv["per_fold"][f]["test_actors"] for f in ("0", "4")] == [[1, 2], [17]]
    for protocol in ("single_clip", "speaker_adapted"):
        assert 0 <= cv[protocol]["accuracy"]["mean"] <= 1 and cv[protocol]["accuracy"]["std"] >= 0
    for fold in (0, 4):
        m = json.loads((project / f"metrics/cv/fer_linear/fold{fold}.json").read_text())
        assert len(m["val_actors"]) == 1 and not set(m["val_actors"]) & set(m["test_actors"])
        assert (project / f"models/cv/fer_linear/fold{fold}/model.pt").exists()
    assert "Running stage" not in dvc(project, "repro")


def test_changing_the_face_margin_reruns_the_video_side_only(project):
    edit_params(project, lambda p: p["faces"].update(margin=0.35))
    assert changed_stages(project) == {"faces"}  # the one stage that reads faces.margin; the rest follows its output
    log = dvc(project, "repro")
    required = {"faces", "encode_video@fer", "train@fer_linear", "evaluate@fer_linear", "train@av_late_fusion",
                "evaluate@av_late_fusion"}
    downstream = {BASELINE, "ensemble", "cv_fold@fer_linear-0", "cv_fold@fer_linear-1", "cv_fold@fer_linear-4",
                  "cv_summary@fer_linear"}
    assert required <= ran(log) <= required | downstream, sorted(ran(log))
    assert not any(s.endswith(("whisper_linear", "logmel_cnn")) or s.startswith("encode_audio") for s in ran(log))


def test_changing_the_log_mel_reruns_no_video_model(project):
    edit_params(project, lambda p: p["features"]["audio"]["logmel"].update(n_mels=32))
    assert changed_stages(project) == {"encode_audio@logmel"}  # the Whisper encoder does not read it
    log = dvc(project, "repro")
    assert ran(log) == {"encode_audio@logmel", "train@logmel_cnn", "evaluate@logmel_cnn"}, sorted(ran(log))
    info = json.loads((project / "data/features/logmel/info.json").read_text())
    assert info["shape"] == [32, 301] and info["config"]["n_mels"] == 32


def test_changing_one_models_rate_reruns_only_that_model(project):
    edit_params(project, lambda p: p["models"]["fer_linear"]["train"].update(lr=0.002))
    status = changed_stages(project)
    assert {"train@fer_linear", "cv_fold@fer_linear-0", "cv_fold@fer_linear-4"} <= status
    assert not {s for s in status if "whisper" in s or "logmel" in s or s.startswith(("faces", "encode"))}
    log = dvc(project, "repro")
    required = {"train@fer_linear", "evaluate@fer_linear"} | {f"cv_fold@fer_linear-{f}" for f in (0, 1, 4)}
    # downstream stages rerun only when what they read changed: the CV summary when a fold's metrics did,
    # the ensemble when a candidate's predictions did
    assert required <= ran(log) <= required | {"cv_summary@fer_linear", "ensemble"}, sorted(ran(log))
    shown = dvc(project, "metrics", "show")
    assert "metrics/fer_linear.json" in shown and "metrics/logmel_cnn.json" in shown


def test_stage_error_names_the_bad_parameter(project, tmp_path):
    edit_params(project, lambda p: p["features"]["video"]["imagenet"].update(backbone="alexnet9"))
    done = subprocess.run([sys.executable, "stages/encode.py", "--input", "imagenet", "--source", "data/faces",
                           "--out", str(tmp_path / "unused")], cwd=project, text=True, capture_output=True,
                          env=venv_env(), timeout=300)
    assert done.returncode == 1
    assert "features.video.imagenet.backbone: 'alexnet9' is not valid; choose one of: mobilenet_v2, resnet18" \
        in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "unused").exists()
