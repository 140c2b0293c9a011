"""Benchmark: what DVC reruns, and how long it takes, after no change, one training parameter changed,
and one actor added to `data.actors`, on a temporary copy of the project.

The copy (dvc.yaml, params.yaml, stages/, avemo/ and the embedded sample archives of the chosen actors)
gets `dvc init --no-scm`, tiny parameters (4 face frames of 48 px, one worker process per stage, 2
epochs), as tests/test_pipeline_e2e.py does, and a profile `bench` written to run.yaml by
`avemo profile bench`: a few models only (default whisper_linear and fer_linear, on the Whisper and
FER2013 encoders, whose weights come from the local caches as params.yaml says), no baseline, no
cross-validation, and the ensemble of those models (dvc.yaml's ensemble stage needs a candidate).
Timed, each a full `dvc repro`:
  1. cold: every stage from nothing;
  2. no change: DVC must run nothing;
  3. one training parameter (models.<first model>.train.lr doubled): only that model's train+evaluate,
     and the ensemble that reads its predictions;
  4. one actor added to data.actors: download, extract_audio, faces, the encode stages and everything
     downstream rerun (their dependency data/raw changed), but extract_audio, faces and the encode
     stages take every clip they have seen from their per-clip cache (data/cache, avemo/cache.py) and
     process only the new actor's clips: the script checks the hit/miss counts each of them records
     (data/cache/STAGE.last_run.json) and that every cache entry written by this step belongs to the
     new actor.
Then, on the final data, each of those stages is run directly with and without the cache to show what
the cache saves.

  python benchmarks/incremental.py
  python benchmarks/incremental.py --actors 1 2 13 17 --add 3 --models whisper_linear fer_linear --keep /tmp/inc
"""
from __future__ import annotations

import argparse
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

from avemo.ids import parse_clip_id  # noqa: E402

ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def sh(project: Path, *command: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(list(command), cwd=project, env=ENV, text=True, capture_output=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {project}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return seconds, done.stdout + done.stderr


def dvc(project: Path, *args: str) -> tuple[float, str]:
    return sh(project, sys.executable, "-m", "dvc", *args)


def stages_run(log: str) -> list[str]:
    """The stages a `dvc repro` ran, or restored from DVC's run cache (which it says too)."""
    return sorted(line.split("'")[1] for line in log.splitlines()
                  if line.startswith("Running stage '") or "is cached - skipping run" in line)


DEFAULT_MODELS = ("whisper_linear", "fer_linear")


def make_project(where: Path, actors: list[int], add: int, models: list[str] | None) -> tuple[Path, list[str]]:
    project = where / "project"
    project.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in ("dvc.yaml", "params.yaml", "run.yaml", ".dvcignore", "stages", "avemo"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, project / item, ignore=ignore)
        else:
            shutil.copy(source, project / item)
    sample = project / "data" / "sample"
    sample.mkdir(parents=True)
    names = [f"Video_Speech_Actor_{a:02d}.zip" for a in sorted(set(actors) | {add})]
    sums = [line for line in (ROOT / "data/sample/MD5SUMS").read_text().splitlines() if line.split()[-1] in names]
    missing = sorted(set(names) - {line.split()[-1] for line in sums})
    if missing:
        raise SystemExit(f"{ROOT / 'data/sample'}: has no {', '.join(missing)} (choose other --actors/--add)")
    (sample / "MD5SUMS").write_text("\n".join(sums) + "\n")
    for name in names:
        shutil.copy(ROOT / "data/sample" / name, sample)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(source="sample", actors=sorted(actors))
    params["faces"].update(n_frames=4, crop_px=48, workers=1)
    params["audio"]["workers"] = 1
    params["features"]["workers"] = 1
    test, val = sorted(actors)[-1], sorted(actors)[-2]
    params["split"] = {"test_actors": [test], "val_actors": [val]}
    params["train_defaults"].update(epochs=2, patience=2)
    available = list(params.get("models", {}))
    models = models or [m for m in DEFAULT_MODELS if m in available] or available[:2]
    for name in models:
        if name not in available:
            raise SystemExit(f"--models: {name} is not in params.yaml models ({', '.join(available)})")
        params["models"][name].setdefault("train", {}).pop("epochs", None)
    # What `dvc repro` runs is run.yaml, written from a profile (avemo/pipeline.py).
    params.setdefault("profiles", {})["bench"] = {"models": models, "baselines": [], "ensemble": models,
                                                  "cv": {"models": [], "baselines": [], "folds": []}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(project, sys.executable, "-m", "avemo.cli", "profile", "bench")
    dvc(project, "init", "--no-scm", "-q")
    return project, models


def cached_stages(project: Path) -> dict[str, str]:
    """The stages with a per-clip cache -> their cache name under data/cache: extract_audio, faces and
    the profile's encode stages (encode_video@NAME / encode_audio@NAME -> encode_NAME)."""
    run = yaml.safe_load((project / "run.yaml").read_text())["run"]
    stages = {"extract_audio": "extract_audio", "faces": "faces"}
    for modality in ("video", "audio"):
        stages.update({f"encode_{modality}@{name}": f"encode_{name}" for name in run[f"encode_{modality}"]})
    return stages


def cache_report(project: Path) -> dict:
    return {stage: json.loads((project / "data" / "cache" / f"{cache}.last_run.json").read_text())
            for stage, cache in cached_stages(project).items()}


def new_entries(project: Path, since: float) -> dict[str, list[int]]:
    """Actors of the clips whose cache entries were written after `since`, per stage."""
    found = {}
    for stage, cache in cached_stages(project).items():
        actors = []
        for entry in (project / "data" / "cache" / cache).iterdir():
            manifest = entry / "manifest.json"
            if entry.name.startswith(".") or not manifest.exists() or manifest.stat().st_mtime < since:
                continue
            actors.append(parse_clip_id(Path(json.loads(manifest.read_text())["source"]).name).actor)
        found[stage] = sorted(actors)
    return found


def direct_command(stage: str, out: str, cache: bool) -> list[str]:
    """The stage script run by hand on the project's data, writing to bench-out/ (not a DVC output)."""
    extra = ["--cache", "data/cache"] if cache else []
    if stage in ("extract_audio", "faces"):
        return [sys.executable, f"stages/{stage}.py", "--raw", "data/raw", "--out", f"bench-out/{out}", *extra]
    kind, name = stage.split("@")
    source = "data/faces" if kind == "encode_video" else "data/audio"
    return [sys.executable, "stages/encode.py", "--input", name, "--source", source, "--out",
            f"bench-out/{out}", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 13, 17],
                        help="actors of the first run (embedded sample; the last two are test and validation)")
    parser.add_argument("--add", type=int, default=3, help="the actor added afterwards (default 3)")
    parser.add_argument("--models", nargs="+",
                        help=f"models trained (default: {' '.join(DEFAULT_MODELS)}); their encoders are run")
    parser.add_argument("--keep", type=Path, help="build the project here and keep it (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.add in args.actors:
        raise SystemExit(f"--add {args.add}: already in --actors")

    where = args.keep or Path(tempfile.mkdtemp(prefix="avemo-bench-inc-"))
    try:
        project, models = make_project(where, args.actors, args.add, args.models)
        print(f"project: {project}; actors {args.actors}, then +{args.add}; models {models}", flush=True)
        rows = []

        def step(name: str, change=None) -> dict:
            if change:
                params = yaml.safe_load((project / "params.yaml").read_text())
                change(params)
                (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            since = time.time()
            seconds, log = dvc(project, "repro")
            row = {"step": name, "seconds": seconds, "stages_run": stages_run(log)}
            rows.append(row)
            print(f"{name}: {seconds:.1f} s; ran {row['stages_run'] or 'nothing'}", flush=True)
            row["since"] = since
            return row

        step("1. cold repro (nothing built)")
        cold = cache_report(project)
        step("2. no change")
        first = models[0]
        step(f"3. models.{first}.train.lr doubled",
             lambda p: p["models"][first].setdefault("train", {}).update(
                 lr=2 * p["models"][first].get("train", {}).get("lr", p["train_defaults"]["lr"])))
        added = step(f"4. actor {args.add} added to data.actors",
                     lambda p: p["data"].update(actors=sorted(p["data"]["actors"] + [args.add])))
        caches = cache_report(project)
        entries = new_entries(project, added["since"])
        metadata = (project / "data/raw/metadata.csv").read_text().splitlines()[1:]
        new_clips = sum(1 for line in metadata if f"-{args.add:02d}.mp4" in line)
        old_clips = len(metadata) - new_clips
        added["cache"] = caches
        added["new_entry_actors"] = entries
        for stage, cache in caches.items():
            ok = cache["misses"] == new_clips and cache["hits"] == old_clips and set(entries[stage]) == {args.add}
            print(f"   {stage}: {cache['hits']} cache hits, {cache['misses']} misses; {len(entries[stage])} new "
                  f"cache entries, all of actor(s) {sorted(set(entries[stage]))} -> "
                  f"{'only the new actor processed' if ok else 'UNEXPECTED'}", flush=True)
            if not ok:
                raise SystemExit(f"{stage}: expected {new_clips} misses and {old_clips} hits, got {cache}")

        direct = []
        for stage, out in cached_stages(project).items():
            for label, cache in (("no cache", False), ("cache, all hits", True)):
                seconds, _ = sh(project, *direct_command(stage, out, cache))
                direct.append({"stage": stage, "mode": label, "clips": len(metadata), "seconds": seconds})
                print(f"   {stage} directly, {label}: {seconds:.1f} s for {len(metadata)} clips", flush=True)

        print()
        print("| step | dvc repro seconds | stages run |")
        print("|---|---|---|")
        for row in rows:
            ran = ", ".join(row["stages_run"]) or "nothing"
            print(f"| {row['step']} | {row['seconds']:.1f} | {ran} |")
        print()
        print(f"Step 4 cache use ({new_clips} new clips of actor {args.add}, {old_clips} seen before):")
        print("| stage | hits | misses | new entries' actors |")
        print("|---|---|---|---|")
        for stage, cache in caches.items():
            print(f"| {stage} | {cache['hits']} | {cache['misses']} | {sorted(set(entries[stage]))} |")
        print()
        print("| stage run directly on the final data | clips | seconds |")
        print("|---|---|---|")
        for row in direct:
            print(f"| {row['stage']}, {row['mode']} | {row['clips']} | {row['seconds']:.1f} |")
        if args.json:
            for row in rows:
                row.pop("since", None)
            args.json.write_text(json.dumps({"command": " ".join(sys.argv), "actors": args.actors, "added": args.add,
                                             "models": models, "cold_cache": cold, "steps": rows,
                                             "direct": direct}, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
