"""A stage that fails loses nothing tracked: the git-tracked outputs (cache: false) are persist: true, so DVC
does not delete them before the stage runs, and training logs into a temporary dvclive directory that replaces
the tracked one only on success. Real `dvc repro` on a git + DVC copy of the embedded sample (3 actors)."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, sample_project, venv_env, write_params


def tracked_outputs_kept_in_git() -> list[str]:
    """Every output dvc.yaml keeps out of DVC's cache (cache: false), as written in dvc.yaml."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict) and value.get("cache") is False:
                    found.append((key, value))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    return found


def test_every_output_kept_in_git_is_persistent():
    """DVC deletes a stage's outputs before running it; only git could bring back the cache: false ones."""
    outputs = tracked_outputs_kept_in_git()
    assert len(outputs) >= 5
    assert [path for path, spec in outputs if spec.get("persist") is not True] == []


def run(project: Path, *command, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(command), cwd=project, env=venv_env(), text=True, capture_output=True, timeout=1800)
    if check:
        assert done.returncode == 0, f"{command} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_failing_train_stage_leaves_its_dvclive_logs_as_committed(tmp_path):
    project = tmp_path / "project"
    params = sample_project(project, ["01", "13", "17"])
    params["split"] = {"test_actors": [17], "val_actors": [13]}
    params["train_defaults"].update(epochs=2, patience=2)
    write_params(project, params)
    git = ("git", "-c", "user.name=test", "-c", "user.email=test@localhost")
    run(project, "git", "init", "-q")
    run(project, sys.executable, "-m", "dvc", "init", "-q")
    run(project, *git, "add", "-A")
    run(project, *git, "commit", "-qm", "tiny project")  # dvclive reads the git repository's HEAD
    run(project, sys.executable, "-m", "dvc", "repro", "train@whisper_linear")
    run(project, *git, "add", "-A")
    run(project, *git, "commit", "-qm", "trained")
    live = project / "dvclive" / "whisper_linear"
    committed = snapshot(live)
    assert "metrics.json" in committed and any(name.startswith("plots/") for name in committed), sorted(committed)
    assert len(yaml.safe_load(committed["metrics.json"])) > 1

    params["split"]["val_actors"] = [17]  # test and validation share an actor: training stops
    write_params(project, params)
    failed = run(project, sys.executable, "-m", "dvc", "repro", "train@whisper_linear", check=False)
    assert failed.returncode != 0
    assert "Running stage 'train@whisper_linear'" in failed.stdout, failed.stdout[-3000:]
    assert "split: actors [17] are in both test_actors and val_actors" in failed.stderr, failed.stderr[-3000:]
    assert snapshot(live) == committed
    assert not [p for p in live.parent.iterdir() if p.name.startswith(".tmp-")]
    status = run(project, "git", "status", "--porcelain", "--", "dvclive").stdout
    assert status == "", status
