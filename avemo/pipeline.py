"""Profiles: what `dvc repro` runs. `avemo profile NAME` writes run.yaml (`run`) from params.yaml `profiles.NAME`.

DVC gives every stage of a `foreach` the same list of dependencies, and cannot expand a list into them.
So `run` holds, for each model, baseline, cross-validation fold and the ensemble, the exact files its
stage reads, in a fixed number of slots (the last one repeated), which dvc.yaml lists one by one: a model
on Whisper states depends on data/features/whisper only, never on the face crops. The stage scripts take
their inputs from those same slots, so a stage cannot read what it does not depend on; `run` is derived
from `profiles` and each model's declared inputs, and `avemo profile --check` (a test) says when it is stale.
params.yaml stays the hand-edited file; run.yaml is only ever written by `avemo profile`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import ParamError
from .modality import FRAMES

INPUT_SLOTS = 3
BASELINE_SLOTS = 3
ENSEMBLE_SLOTS = 8


def input_path(name: str) -> str:
    """The stage output that holds input `name` (an encoder's, refused when no encoder has that name)."""
    from .encoders.registry import spec_of

    if name == FRAMES:
        return "data/faces"
    return f"data/features/{spec_of(name).name}"


def slots(paths: list[str], count: int, what: str) -> list[str]:
    paths = list(dict.fromkeys(paths))
    if not paths or len(paths) > count:
        raise ParamError(f"{what}: {len(paths)} inputs ({', '.join(paths)}); a stage has {count} input slots "
                         "(avemo/pipeline.py and dvc.yaml)")
    return paths + [paths[-1]] * (count - len(paths))


def model_deps(params: dict, name: str) -> list[str]:
    from .models import model_inputs

    models = params.get("models", {})
    if name not in models:
        raise ParamError(f"profile: model '{name}' is not in params.yaml models; choose among: {', '.join(models)}")
    entry = models[name]
    return slots([input_path(i) for i in model_inputs(entry["architecture"], entry.get("args", {}))],
                 INPUT_SLOTS, f"models.{name}")


def baseline_deps(spec: str) -> list[str]:
    from .baselines.features import parse_feature_set
    from .baselines.fit_and_score import baseline_parts

    feature_set, _ = baseline_parts(spec)
    return slots([input_path(n) for n in parse_feature_set(feature_set)], BASELINE_SLOTS, f"baseline {spec}")


def run_section(params: dict, profile: str) -> dict:
    from .baselines.fit_and_score import baseline_name, baseline_parts

    profiles = params.get("profiles", {})
    if profile not in profiles:
        raise ParamError(f"profile: '{profile}' unknown; choose one of: {', '.join(profiles)}")
    spec = profiles[profile]
    models = {name: {"deps": model_deps(params, name)} for name in spec.get("models", [])}
    baselines = {}
    for b in spec.get("baselines", []):
        feature_set, classifier = baseline_parts(b)
        baselines[b] = {"features": feature_set, "classifier": classifier, "name": baseline_name(b),
                        "deps": baseline_deps(b)}
    cv = spec.get("cv", {}) or {}
    folds = {}
    for name in cv.get("models", []) + cv.get("baselines", []):
        is_model = name in params.get("models", {})
        deps = model_deps(params, name) if is_model else baseline_deps(name)
        label = name if is_model else baseline_name(name)
        param = f"models.{name}" if is_model else "baselines.grids"  # what else the fold's result depends on
        for fold in cv.get("folds", []):
            folds[f"{label}-{fold}"] = {"name": name, "label": label, "fold": int(fold), "param": param, "deps": deps}
    summaries = sorted({f["label"] for f in folds.values()})
    members = [m if m in params.get("models", {}) else baseline_name(m) for m in spec.get("ensemble", [])]
    ensemble = {"candidates": members,
                "deps": slots([f"metrics/predictions/{m}.csv" for m in members], ENSEMBLE_SLOTS, "ensemble")
                if members else []}
    release = {}
    if spec.get("release"):  # the release@ stage (avemo/release.py) on params.yaml release.baseline
        name = params.get("release", {}).get("baseline", "")
        release[name] = {"deps": baseline_deps(name)}
    needed = {Path(path).name for entry in [*models.values(), *baselines.values(), *folds.values(), *release.values()]
              for path in entry["deps"] if path.startswith("data/features/")}
    from .encoders.registry import spec_of

    # the second parameter key each encode stage depends on: what else it reads (the spectrogram embedding:
    # the log-mel settings), else its own key again
    specs = [spec_of(name) for name in sorted(needed)]
    encoders = {m: {s.name: {"param": s.reads or s.param} for s in specs if s.modality == m} for m in ("video", "audio")}
    return {"profile": profile, "encode_video": encoders["video"], "encode_audio": encoders["audio"],
            "models": models, "baselines": baselines, "cv_folds": folds,
            "cv_summaries": {name: {"dir": f"metrics/cv/{name}"} for name in summaries}, "ensemble": ensemble,
            "release": release}


RUN_HEADER = """\
# Generated by `avemo profile NAME` from params.yaml `profiles`: what `dvc repro` runs (dvc.yaml reads it
# through `vars`). Do not edit; `avemo profile --check` says whether it matches params.yaml.
"""


def run_file(params_path: Path) -> Path:
    return Path(params_path).parent / "run.yaml"


def current_profile(run_path: Path) -> str:
    """The profile run.yaml was written for (`default` before any)."""
    from .io import load_params

    return (load_params(path=run_path).get("run") or {}).get("profile", "default") if run_path.is_file() else "default"


def write_profile(params_path: Path, profile: str | None = None) -> dict:
    """Write run.yaml beside params.yaml from `profiles.<profile>` (default: run.yaml's own profile), and the
    code each dvc.yaml stage lists (avemo/stage_deps.py) when dvc.yaml is there too."""
    import yaml

    from .io import load_params, write_bytes

    run_path = run_file(params_path)
    run = run_section(load_params(path=params_path), profile or current_profile(run_path))
    write_bytes(run_path, (RUN_HEADER + yaml.safe_dump({"run": run}, sort_keys=False, width=120)).encode())
    dvc_yaml = Path(params_path).parent / "dvc.yaml"
    if dvc_yaml.is_file() and (dvc_yaml.parent / "avemo").is_dir():
        from .stage_deps import write_stage_code

        write_stage_code(dvc_yaml, dvc_yaml.parent)
    return run


def stale(params_path: Path, profile: str | None) -> list[str]:
    """What `avemo profile` would change: run.yaml against the profile, dvc.yaml's code lists."""
    import yaml as pyyaml

    from .io import load_params
    from .stage_deps import stale_stages

    run_path, dvc_yaml = run_file(params_path), Path(params_path).parent / "dvc.yaml"
    profile = profile or current_profile(run_path)
    problems = []
    written = load_params(path=run_path).get("run") if run_path.is_file() else None
    if written != run_section(load_params(path=params_path), profile):
        problems.append(f"{run_path}: does not match profile '{profile}'")
    if dvc_yaml.is_file() and (dvc_yaml.parent / "avemo").is_dir():
        stages = stale_stages(pyyaml.safe_load(dvc_yaml.read_text()), dvc_yaml.parent)
        if stages:
            problems.append(f"{dvc_yaml}: the code listed by stage(s) {', '.join(stages)} is not what their scripts import")
    return problems


def main(argv: list[str] | None = None) -> None:
    import argparse

    from .entry import run_stage

    parser = argparse.ArgumentParser(prog="avemo profile", description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="a key of params.yaml profiles (default: the one run.yaml holds)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--check", action="store_true",
                        help="only say whether run.yaml matches the profile and dvc.yaml lists each stage's code")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def body():
        profile = args.name or current_profile(run_file(args.params))
        if args.check:
            problems = stale(args.params, profile)
            for line in problems:
                print(f"{line}; run `avemo profile {profile}`")
            if problems:
                sys.exit(1)
            print(f"{run_file(args.params)}: matches profile '{profile}'; dvc.yaml lists each stage's code")
            return
        run = write_profile(args.params, profile)
        print(f"{run_file(args.params)}: profile '{profile}': {len(run['models'])} models, {len(run['baselines'])} "
              f"baselines, {len(run['cv_folds'])} cross-validation folds, ensemble of {len(run['ensemble']['candidates'])}")

    run_stage(body)
