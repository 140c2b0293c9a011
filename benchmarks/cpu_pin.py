"""What pinning the CPU kernels at AVX2 (avemo/cpu.py) costs in speed, and whether the stages' output
bytes then depend on what the CPU offers. One run, every measurement in a fresh Python process (the
variables act when the libraries load):

  pinned            avemo's pin, on this CPU
  pinned-avx2-cpu   the pin, and every library told that the CPU has no AVX-512 (NO_AVX512: what an
                    AVX2-only CPU shows them, including libraries the pin leaves alone: MKL, OpenCV)
  free              AVEMO_CPU_PIN=0: each library's own choice on this CPU
  free-avx2-cpu     AVEMO_CPU_PIN=0 on the simulated AVX2-only CPU

Speed: the faces stage's per-clip work (avemo.faces.crop_clips.process_clip: decode, MTCNN, crops, strip) and
the encoders' (avemo.preprocess, as the encode stages run it), one torch thread, models loaded once, one
warm-up clip not timed, over the inputs of N clips of the embedded sample, made
by the real download, extract_audio and faces stages; the environments alternate for --rounds rounds and
the best round counts (the machine is shared). Bytes: the real stage scripts (faces, stages/encode.py) per
environment, compared file by file.

  python benchmarks/cpu_pin.py --json docs/results/benchmarks/cpu_pin.json
  python benchmarks/cpu_pin.py --encoders whisper --rounds 1 --no-bytes
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NO_AVX512 = {  # what a CPU without AVX-512 (with AVX2 and FMA) shows each library that dispatches at run time
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "CT2_FORCE_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX512_SKX",
}
ENVIRONMENTS = {
    "pinned": {},
    "pinned-avx2-cpu": NO_AVX512,
    "free": {"AVEMO_CPU_PIN": "0"},
    "free-avx2-cpu": {"AVEMO_CPU_PIN": "0", **NO_AVX512},
}
PIN_VARIABLES = ("AVEMO_CPU_PIN", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "CT2_FORCE_CPU_ISA", "CT2_USE_MKL",
                 "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES",
                 "OPENCV_CPU_DISABLE", "DNNL_MAX_CPU_ISA")
VIDEO_ENCODERS = ("fer", "imagenet")
# --ablation: each pin variable in turn set back to what the library does by itself on this CPU (or, for
# CT2_USE_MKL and MKL_CBWR, on an Intel CPU), the others pinned
UNPINNED_VALUE = {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "ALL", "CT2_FORCE_CPU_ISA": "AVX512",
                  "CT2_USE_MKL": "1", "MKL_CBWR": "AUTO", "OPENBLAS_CORETYPE": "SkylakeX",
                  "NPY_DISABLE_CPU_FEATURES": ""}


def environment(name: str) -> dict:
    """This process's environment without any pin variable, plus environment `name`'s (or, for
    `unpinned:VAR`, VAR set as the library would choose it); one thread each."""
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARIABLES}
    variable = name.split(":", 1)[1] if name.startswith("unpinned:") else None
    env.update(ENVIRONMENTS.get(name, {variable: UNPINNED_VALUE.get(variable)}))
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(cwd: Path, args: list, env: dict) -> str:
    done = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, text=True, capture_output=True,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def make_project(where: Path, actor: str = "01", clips: int = 8, n_frames: int = 16) -> Path:
    """A project copy holding `clips` clips of one embedded-sample actor (the faces stage at `n_frames`), its
    download and extract_audio outputs made (pinned)."""
    import zipfile

    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", where / "params.yaml")
    shutil.copytree(ROOT / "stages", where / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    sample = where / "data" / "sample"
    sample.mkdir(parents=True)
    archive = sample / f"Video_Speech_Actor_{actor}.zip"
    with zipfile.ZipFile(ROOT / "data/sample" / archive.name) as source, zipfile.ZipFile(archive, "w") as out:
        members = sorted(m for m in source.namelist() if m.endswith(".mp4"))[:clips]
        for member in members:
            out.writestr(member, source.read(member))
    (sample / "MD5SUMS").write_text(f"{hashlib.md5(archive.read_bytes()).hexdigest()}  {archive.name}\n")
    params = yaml.safe_load((where / "params.yaml").read_text())
    params["faces"].update(n_frames=n_frames, workers=1)
    params["audio"]["workers"] = 1
    params["features"]["workers"] = 1
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = environment("pinned")
    run(where, ["stages/download.py", "--sample-dir", "data/sample", "--archives", "data/archives",
                "--out", "data/raw"], env)
    run(where, ["stages/extract_audio.py", "--raw", "data/raw", "--out", "data/audio"], env)
    return where


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def faces_run(project: Path, env_name: str) -> Path:
    """The faces stage under environment `env_name`: data/faces-<env>."""
    out = project / "data" / f"faces-{env_name}"
    run(project, ["stages/faces.py", "--raw", "data/raw", "--out", out], environment(env_name))
    return out


def encode_run(project: Path, encoder: str, env_name: str, faces: Path) -> Path:
    """stages/encode.py for `encoder` under environment `env_name` (video encoders read `faces`)."""
    out = project / "data" / "features" / f"{encoder}-{env_name}"
    source = faces if encoder in VIDEO_ENCODERS else project / "data" / "audio"
    run(project, ["stages/encode.py", "--input", encoder, "--source", source, "--out", out], environment(env_name))
    return out


def compare_bytes(project: Path, encoders, env_names, faces: bool = True) -> dict:
    """Per stage output (faces unless `faces` is false, each encoder): env name -> file digests, and whether
    all environments agree. The encoders read the pinned faces stage's crops."""
    outputs = {}
    if faces:
        runs = {name: faces_run(project, name) for name in env_names}
        outputs["faces"] = {name: {k: v for k, v in digests(runs[name]).items() if k != "report.json"}
                            for name in env_names}
    crops = project / "data" / "faces-pinned"
    if not crops.exists():
        faces_run(project, "pinned")
    for encoder in encoders:
        outputs[encoder] = {name: digests(encode_run(project, encoder, name, crops)) for name in env_names}
    return {stage: {"same": all(d == by_env[env_names[0]] for d in by_env.values()), "digests": by_env}
            for stage, by_env in outputs.items()}


CHILD = r"""
import json, sys, time
from pathlib import Path
import avemo, numpy as np, torch
from avemo.audio import load_wav
from avemo.encoders.registry import load_encoder, modality_of
from avemo.io import load_params, read_json
from avemo.preprocess import audio_inputs, face_inputs
from avemo.faces.strip import load_strip
torch.set_num_threads(1)
name, project = sys.argv[1], Path(sys.argv[2])
params = load_params(path=project / "params.yaml")
modality = "faces" if name == "faces" else modality_of(name)
if modality == "faces":
    import tempfile
    from avemo.faces.crop_clips import process_clip
    out = Path(tempfile.mkdtemp())
    (out / "strips").mkdir()
    inputs = sorted((project / "data" / "raw" / "clips").glob("*.mp4"))
    work = lambda x: process_clip(x, params["faces"], out)
else:
    cfg = params["features"][modality][name]
    encoder = load_encoder(name, cfg, params["audio"]["sample_rate"], params["features"]["audio"].get("logmel"),
                           "cpu")
if modality == "video":
    faces = project / "data" / "faces-pinned"
    n = read_json(faces / "report.json")["config"]["n_frames"]
    inputs = [load_strip(p, n) for p in sorted((faces / "strips").glob("*.jpg"))]
    work = lambda x: face_inputs(x, {name: encoder})[name]
elif modality == "audio":
    inputs = [load_wav(p, params["audio"]["sample_rate"])
              for p in sorted((project / "data" / "audio" / "wav").glob("*.wav"))]
    work = lambda x: audio_inputs(x, params["audio"], {name: encoder})[name]
work(inputs[0])
start = time.perf_counter()
for x in inputs:
    work(x)
print(json.dumps({"clips": len(inputs), "seconds": time.perf_counter() - start,
                  "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def speed(project: Path, encoders, env_names, rounds: int) -> dict:
    """encoder -> env -> best seconds per clip over `rounds` alternating rounds."""
    best: dict = {e: {} for e in encoders}
    for _ in range(rounds):
        for encoder in encoders:
            for name in env_names:
                got = json.loads(run(project, ["-c", CHILD, encoder, project], environment(name)).splitlines()[-1])
                per_clip = got["seconds"] / got["clips"]
                best[encoder][name] = min(best[encoder].get(name, per_clip), per_clip)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["fer", "imagenet", "whisper", "whisper_layers"])
    parser.add_argument("--clips", type=int, default=8, help="clips of actor 01 of the embedded sample")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-bytes", action="store_true", help="speed only")
    parser.add_argument("--ablation", action="store_true",
                        help="also each pin variable set back to the library's own choice (the encoders' bytes)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cpu-pin-") as tmp:
        project = make_project(Path(tmp) / "project", clips=args.clips)
        names = list(ENVIRONMENTS)
        faces_run(project, "pinned")  # the speed runs' face crops
        result = {"cpu": cpu_name(), "clips": args.clips}
        if not args.no_bytes:
            shutil.rmtree(project / "data" / "faces-pinned")
            result["bytes"] = compare_bytes(project, args.encoders, names)
        if args.ablation:
            result["ablation"] = ablation(project, args.encoders)
        result["seconds_per_clip"] = speed(project, ["faces", *args.encoders], ["pinned", "free"], args.rounds)
    result["pinned_over_free"] = {e: round(t["pinned"] / t["free"], 3) for e, t in result["seconds_per_clip"].items()}
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return f"{model} ({'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'})"


def ablation(project: Path, encoders) -> dict:
    """pin variable -> the encoders whose bytes change when that variable alone is left to the library."""
    faces = project / "data" / "faces-pinned"
    pinned = {e: digests(project / "data" / "features" / f"{e}-pinned") for e in encoders}
    return {variable: [e for e in encoders if digests(encode_run(project, e, f"unpinned:{variable}", faces)) != pinned[e]]
            for variable in UNPINNED_VALUE}


def report(result: dict) -> None:
    print(f"CPU: {result['cpu']}, {result['clips']} clips")
    for stage, entry in result.get("bytes", {}).items():
        groups: dict = {}
        for name, files in entry["digests"].items():
            groups.setdefault(json.dumps(files, sort_keys=True), []).append(name)
        print(f"  {stage:10s} " + " | ".join(" = ".join(g) for g in groups.values()))
    for variable, changed in result.get("ablation", {}).items():
        print(f"  without {variable}: {', '.join(changed) or 'no change'}")
    for encoder, times in result["seconds_per_clip"].items():
        print(f"  {encoder:10s} pinned {times['pinned'] * 1000:.1f} ms/clip, free {times['free'] * 1000:.1f} ms/clip, "
              f"ratio {result['pinned_over_free'][encoder]}")


if __name__ == "__main__":
    main()
