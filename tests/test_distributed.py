"""Training under torchrun: 2 processes on CPU (gloo) on real features of 4 sample actors."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, venv_env, write_params

ACTORS = ["01", "02", "13", "17"]  # train 01 + 02 (16 clips, 8 per rank), validation 13, test 17
pytestmark = pytest.mark.slow


def run(project: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=project, env=venv_env(), text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def project(sample_data, tmp_path_factory) -> Path:
    """A project whose data/ holds the real stages' outputs of 4 sample actors (the session's sample data:
    log-mel and ImageNet embeddings of 4 face crops of 48 px per clip), metadata restricted to them."""
    project = tmp_path_factory.mktemp("ddp")
    for item in ("dvc.yaml", ".dvcignore", "stages", "avemo"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, project / item)
    (project / "data" / "raw").mkdir(parents=True)
    lines = sample_data.metadata.read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",")[0][-2:] in ACTORS]
    (project / "data/raw/metadata.csv").write_text("\n".join(keep) + "\n")
    for name in ("logmel", "imagenet"):
        shutil.copytree(sample_data.features(name), project / "data/features" / name)
    params = sample_data.params()
    params["split"] = {"test_actors": [17], "val_actors": [13]}
    # gloo on CPU even where CUDA is present (one GPU cannot hold two NCCL ranks); 2 steps per rank and epoch
    params["runtime"] = {"device": "cpu", "resume": False}
    params["train_defaults"].update(epochs=2, patience=2, batch_size=4)
    write_params(project, params)
    return project


def torchrun(project: Path, model: str, inputs: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    return run(project, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", nproc,
               "stages/train.py", "--model", model, "--inputs", *[f"data/features/{i}" for i in inputs],
               "--metadata", "data/raw/metadata.csv", "--checkpoint", f"models/{model}.pt",
               "--live", f"dvclive/{model}", "--rank-report", f"ranks/{model}")


# logmel_cnn: batch norm (DDP broadcasts rank 0's buffers); cross_attention_fusion: the triplet loss, a
# method other than forward, which must run inside the DDP wrapper for its gradients to be averaged.
@pytest.mark.parametrize("model, inputs", [("logmel_cnn", ["logmel"]),
                                           ("cross_attention_fusion", ["imagenet", "logmel"])])
def test_two_processes_share_the_epochs_and_keep_one_model(project, model, inputs):
    from avemo.training import load_checkpoint
    from avemo.training.optim import parameter_digest

    done = torchrun(project, model, inputs)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert f"train {model} [rank 0/2]" in done.stdout and f"train {model} [rank 1/2]" in done.stdout

    # one checkpoint (and one last-epoch file), written by rank 0 only, complete, loadable without DDP
    assert sorted(p.name for p in (project / "models").glob(f"*{model}*")) == [f"{model}.pt"]
    assert sorted(p.name for p in (project / "models/last").iterdir() if model in p.name) == [f"{model}.last.pt"]
    assert not list((project / "models").rglob(".tmp-*"))
    net, _, checkpoint = load_checkpoint(project / "models" / f"{model}.pt")
    assert not any(key.startswith("module.") for key in checkpoint["model"])
    assert checkpoint["distributed"] == {"world_size": 2, "backend": "gloo"}
    zeros = {name: torch.zeros(1, *shape) for name, shape in checkpoint["shapes"].items()}
    assert net(zeros).shape == (1, 8)
    # dvclive: one writer, one row per epoch
    assert len((project / f"dvclive/{model}/plots/metrics/train/loss.tsv").read_text().splitlines()) == 1 + 2

    ranks = [json.loads((project / f"ranks/{model}/rank{r}.json").read_text()) for r in (0, 1)]
    train_clips = {line.split(",")[0] for line in (project / "data/raw/metadata.csv").read_text().splitlines()[1:]
                   if line.split(",")[0].split("-")[-1] in ("01", "02")}
    assert len(train_clips) == 16 and [r["epochs_run"] for r in ranks] == [2, 2]
    for epoch in range(2):
        first, second = (set(r["clips"][epoch]) for r in ranks)
        assert len(first) == len(second) == 8 and not first & second and first | second == train_clips
    assert ranks[0]["clips"][0] != ranks[0]["clips"][1]  # a new permutation each epoch
    assert [r["distributed"]["clips_trained"] for r in ranks] == [16, 16]

    # after every step the replicas are equal: both ranks end with the same parameters, which are
    # those rank 0 saved for its last epoch
    digests = {r["distributed"]["params_sha256"] for r in ranks}
    assert len(digests) == 1
    last = torch.load(project / f"models/last/{model}.last.pt", weights_only=False)
    net.load_state_dict(last["model"])
    assert parameter_digest(net) in digests
    # rank 0 validated and every rank agrees on the best epoch and its numbers
    assert ranks[0]["val_accuracy"] == ranks[1]["val_accuracy"] and ranks[0]["best_epoch"] == ranks[1]["best_epoch"]


def test_the_dvc_train_stage_runs_under_torchrun_when_params_say_so(project):
    """params.yaml `launch.train` is the start of the train stages' command in dvc.yaml."""
    from avemo.training import load_checkpoint

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["launch"]["train"] = "python -m torch.distributed.run --standalone --nproc_per_node 2"
    params["profiles"]["ddp"] = {"models": ["video_lstm"], "baselines": [], "ensemble": ["video_lstm"], "cv": {}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    profile = run(project, "-m", "avemo.cli", "profile", "ddp")  # run.yaml, what dvc.yaml reads
    assert profile.returncode == 0, profile.stderr
    dvc = lambda *args: subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=venv_env(),  # noqa: E731
                                       text=True, capture_output=True, timeout=600)
    assert dvc("init", "--no-scm", "-q").returncode == 0
    done = dvc("repro", "--single-item", "train@video_lstm")  # upstream outputs made by the fixture
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "[rank 0/2]" in done.stdout and "[rank 1/2]" in done.stdout
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train@video_lstm"]
    assert lock["cmd"].startswith("python -m torch.distributed.run --standalone --nproc_per_node 2 stages/train.py")
    assert load_checkpoint(project / "models/video_lstm.pt")[2]["distributed"]["world_size"] == 2
