"""The setup's pip wrapper (scripts/pip-install.sh): a failed install is retried, then reported; a good one passes."""
import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pip-install.sh"
PIP = str(Path(sys.executable).with_name("pip"))


def run_wrapper(*args, attempts=2):
    env = {**os.environ, "PIP_INSTALL_ATTEMPTS": str(attempts), "PIP_INSTALL_PAUSE_S": "0"}
    return subprocess.run(["bash", str(SCRIPT), PIP, "--no-index", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def tiny_wheel(folder: Path) -> Path:
    files = {"tinypkg_avemo.py": b"VALUE = 7\n",
             "tinypkg_avemo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg-avemo\nVersion: 1.0\n",
             "tinypkg_avemo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for name, data in files.items()]
    files["tinypkg_avemo-1.0.dist-info/RECORD"] = ("\n".join(record + ["tinypkg_avemo-1.0.dist-info/RECORD,,"]) + "\n").encode()
    wheel = folder / "tinypkg_avemo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_failing_install_is_retried_then_reported(tmp_path):
    missing = tmp_path / "absent-1.0-py3-none-any.whl"
    result = run_wrapper("--target", str(tmp_path / "site"), str(missing), attempts=2)
    assert result.returncode != 0
    assert "attempt 1 of 2 failed" in result.stderr
    assert "giving up after 2 attempts" in result.stderr and str(missing) in result.stderr


def test_good_install_passes_first_time(tmp_path):
    wheel = tiny_wheel(tmp_path)
    result = run_wrapper("--quiet", "--target", str(tmp_path / "site"), str(wheel))
    assert result.returncode == 0, result.stderr
    assert "failed" not in result.stderr
    assert (tmp_path / "site" / "tinypkg_avemo.py").read_text() == "VALUE = 7\n"
