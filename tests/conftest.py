import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The workplace's shared data (ravdess-lite, ravdess-720p): AVEMO_SHARED, else ../shared beside the repo."""
    return Path(os.environ.get("AVEMO_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def lite_dir() -> Path:
    path = shared_dir() / "ravdess-lite"
    if not (path / "MD5SUMS").exists():
        pytest.skip(f"{path}: ravdess-lite mirror not present (set AVEMO_SHARED)")
    return path


@pytest.fixture(scope="session")
def hd_dir() -> Path:
    path = shared_dir() / "ravdess-720p" / "Actor_01"
    if not path.exists():
        pytest.skip(f"{path}: ravdess-720p files not present (set AVEMO_SHARED)")
    return path


@pytest.fixture(scope="session")
def ffmpeg():
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()

    def run(*args):
        subprocess.run([exe, "-y", "-loglevel", "error", *map(str, args)], check=True)
    return run


@pytest.fixture
def sample_zip(tmp_path) -> Path:
    """A copy of one embedded-sample archive (8 real clips of actor 01)."""
    target = tmp_path / "Video_Speech_Actor_01.zip"
    shutil.copy(ROOT / "data" / "sample" / target.name, target)
    return target


def sample_project(where: Path, actors: list[str], items=("dvc.yaml", "params.yaml", "stages", "avemo")) -> dict:
    """A copy of the project in `where` whose embedded sample holds only `actors` (two-digit ids), with
    tiny preprocessing (4 face crops of 48 px, a random-weight backbone: no network in tests). Returns
    the params dict for the caller to adjust and write back with `write_params`."""
    import yaml

    for item in items:
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy
        copy(ROOT / item, where / item)
    sample = where / "data" / "sample"
    sample.mkdir(parents=True)
    sums = [line for line in (ROOT / "data/sample/MD5SUMS").read_text().splitlines()
            if any(f"Actor_{a}.zip" in line for a in actors)]
    (sample / "MD5SUMS").write_text("\n".join(sums) + "\n")
    for actor in actors:
        shutil.copy(ROOT / f"data/sample/Video_Speech_Actor_{actor}.zip", sample)
    params = yaml.safe_load((where / "params.yaml").read_text())
    params["faces"].update(n_frames=4, size=48)
    params["features"]["weights"] = "none"  # recorded as random-init
    return params


def write_params(where: Path, params: dict) -> None:
    import yaml

    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
