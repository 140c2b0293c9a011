"""Byte-identical stage outputs on any x86-64 CPU with AVX2: avemo/cpu.py caps the numeric libraries at AVX2
before they load (stage scripts import avemo first), and the encoders' bytes then do not change when every
library is told the CPU has no AVX-512, while without the pin they do (on an AVX-512 CPU)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, venv_env

sys.path.insert(0, str(ROOT / "benchmarks"))
import cpu_pin  # noqa: E402  benchmarks/cpu_pin.py: the same runs, with timings

from avemo.cpu import PIN, SWITCH, pin  # noqa: E402


def first_third_party_import(path: Path) -> str | None:
    """The top-level module of the first import in `path` that is not from the standard library."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "__future__":
                return top
    return None


def test_every_stage_script_imports_avemo_before_any_library():
    scripts = sorted((ROOT / "stages").glob("*.py"))
    assert len(scripts) >= 9
    assert {p.name: first_third_party_import(p) for p in scripts} == {p.name: "avemo" for p in scripts}


def test_the_import_order_check_sees_a_library_first(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("import argparse\nfrom dvclive import Live\nfrom avemo.io import load_params\n")
    assert first_third_party_import(script) == "dvclive"


def test_pin_sets_only_what_is_unset_and_can_be_switched_off():
    assert pin({SWITCH: "0"}) == {}
    environ = {"ATEN_CPU_CAPABILITY": "default"}
    added = pin(environ)
    assert environ["ATEN_CPU_CAPABILITY"] == "default" and "ATEN_CPU_CAPABILITY" not in added
    assert {k: environ[k] for k in PIN} == {**PIN, "ATEN_CPU_CAPABILITY": "default"}


def test_a_per_clip_cache_entry_made_under_other_kernel_settings_misses(tmp_path, monkeypatch):
    from avemo.cache import ClipCache

    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF....WAVEfmt ")
    pinned = ClipCache(tmp_path / "cache", "encode_fer", {"zoom": 0.65}).key(clip)
    assert ClipCache(tmp_path / "cache", "encode_fer", {"zoom": 0.65}).key(clip) == pinned
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # as under AVEMO_CPU_PIN=0
    assert ClipCache(tmp_path / "cache", "encode_fer", {"zoom": 0.65}).key(clip) != pinned


def torch_capability(*code: str, **env) -> str:
    done = subprocess.run([sys.executable, "-c", "; ".join([*code, "import torch",
                                                            "print(torch.backends.cpu.get_cpu_capability())"])],
                          env={k: v for k, v in venv_env(**env).items() if k not in PIN}, text=True,
                          capture_output=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def test_importing_avemo_caps_torch_at_avx2_unless_switched_off():
    assert torch_capability("import avemo") == "AVX2"
    assert torch_capability("import avemo", AVEMO_CPU_PIN="0") == torch_capability()


ENCODERS = ("fer", "whisper", "whisper_layers")  # the ones whose bytes follow the CPU when unpinned (imagenet's do not)


@pytest.mark.slow
def test_stage_outputs_do_not_depend_on_what_the_cpu_offers(tmp_path):
    """The real faces and encode stages on 4 clips of the embedded sample, in processes that see this CPU
    or, through every library's own variable, a CPU without AVX-512: the same bytes when pinned. Without
    the pin each of these encoders' features differ on an AVX-512 CPU, so the comparison can fail."""
    project = cpu_pin.make_project(tmp_path / "project", clips=4, n_frames=4)
    pinned = cpu_pin.compare_bytes(project, ENCODERS, ["pinned", "pinned-avx2-cpu"])
    assert {stage: entry["same"] for stage, entry in pinned.items()} == {s: True for s in ("faces", *ENCODERS)}
    if "avx512f" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("this CPU offers no AVX-512: the unpinned control would compare like with like")
    free = cpu_pin.compare_bytes(project, ENCODERS, ["free", "free-avx2-cpu"], faces=False)
    assert {stage: entry["same"] for stage, entry in free.items()} == {s: False for s in ENCODERS}
