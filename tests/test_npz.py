"""Feature and model arrays (features.npz, model.npz) are the same bytes on every Python: dvc.lock hashes them, so
a clone on another interpreter must not see its committed outputs change."""
import glob
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from avemo.io import save_npz
from avemo.modelfile import load_bundle, save_bundle

ROOT = Path(__file__).resolve().parents[1]
WRITE = ("import sys, numpy as np; from avemo.io import save_npz; "
         "save_npz(sys.argv[1], {'clips': np.array(['01-01-03-01-01-01-01', '02-01-05-02-02-02-02']), "
         "'values': np.arange(24, dtype=np.float16).reshape(2, 3, 4) / 7})")


def other_pythons():
    """Interpreters of this minor version other than the one running the tests (numpy's wheel fits them too)."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = {shutil.which(minor, path=p) for p in os.environ.get("PATH", "").split(os.pathsep)} | \
        set(glob.glob(f"/usr/bin/{minor}")) | set(glob.glob(f"/usr/local/bin/{minor}")) | \
        set(glob.glob(os.path.expanduser(f"~/.pyenv/versions/*/bin/{minor}")))
    ours = platform.python_version()
    for path in sorted(p for p in found if p):
        version = subprocess.run([path, "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True).stdout.strip()
        if version and version != ours:
            yield path, version


def write_with(python: str, target: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])}
    subprocess.run([python, "-c", WRITE, str(target)], check=True, env=env, capture_output=True, timeout=120)


def test_same_bytes_on_another_python(tmp_path):
    others = list(other_pythons())
    if not others:
        pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} here besides {platform.python_version()}")
    write_with(sys.executable, tmp_path / "ours.npz")
    for python, version in others:
        write_with(python, tmp_path / f"{version}.npz")
        assert (tmp_path / f"{version}.npz").read_bytes() == (tmp_path / "ours.npz").read_bytes(), \
            f"{python} ({version}) wrote other bytes than {platform.python_version()}"


def test_plain_header_fixed_dates_and_np_load(tmp_path):
    arrays = {"clips": np.array(["a", "bb"]), "values": np.linspace(0, 1, 12, dtype=np.float32).reshape(2, 6)}
    save_npz(tmp_path / "one.npz", arrays)
    save_npz(tmp_path / "two.npz", arrays)
    data = (tmp_path / "one.npz").read_bytes()
    assert data == (tmp_path / "two.npz").read_bytes()
    assert data[4] == 20, "a zip64 local header: its bytes depend on the Python patch release"
    with zipfile.ZipFile(tmp_path / "one.npz") as archive:
        assert [(i.filename, i.date_time) for i in archive.infolist()] == [("clips.npy", (1980, 1, 1, 0, 0, 0)),
                                                                          ("values.npy", (1980, 1, 1, 0, 0, 0))]
    with np.load(tmp_path / "one.npz", allow_pickle=False) as loaded:
        assert loaded["clips"].tolist() == ["a", "bb"]
        np.testing.assert_array_equal(loaded["values"], arrays["values"])


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        save_npz(tmp_path / "bad.npz", {"values": np.array([{"a": 1}], dtype=object)})


def test_model_bundle_round_trip_is_byte_stable(tmp_path):
    arrays = {"coef": np.eye(3, dtype=np.float64), "classes": np.arange(3)}
    save_bundle(tmp_path / "m1", {"kind": "test"}, arrays)
    save_bundle(tmp_path / "m2", {"kind": "test"}, arrays)
    assert (tmp_path / "m1" / "model.npz").read_bytes() == (tmp_path / "m2" / "model.npz").read_bytes()
    meta, loaded = load_bundle(tmp_path / "m1")
    assert meta["kind"] == "test" and set(loaded) == {"coef", "classes"}
    np.testing.assert_array_equal(loaded["coef"], arrays["coef"])
