import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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
