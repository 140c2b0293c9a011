"""Profiles: what `dvc repro` runs. `avemo profile NAME` writes params.yaml `run` from `profiles.NAME`.

DVC gives every stage of a `foreach` the same list of dependencies, and cannot expand a list into them.
So `run` holds, for each model, baseline, cross-validation fold and the ensemble, the exact files its
stage reads, in a fixed number of slots (the last one repeated), which dvc.yaml lists one by one: a model
on Whisper states depends on data/features/whisper only, never on the face crops. The stage scripts take
their inputs from those same slots, so a stage cannot read what it does not depend on; `run` is derived
from `profiles` and each model's declared inputs, and `avemo profile --check` (a test) says when it is stale.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import ParamError

INPUT_SLOTS = 3
BASELINE_SLOTS = 3
ENSEMBLE_SLOTS = 8


def input_path(name: str) -> str:
    """The stage output that holds input `name`."""
    if name == "frames":
        return "data/faces"
    return f"data/features/{name}"


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


def baseline_parts(spec: str) -> tuple[str, str]:
    """'whisper_fer-late_logreg' -> ('whisper_fer', 'late_logreg')."""
    from .baselines.features import parse_feature_set
    from .baselines.fit import CLASSIFIERS

    feature_set, _, classifier = spec.partition("-")
    parse_feature_set(feature_set)
    if classifier not in CLASSIFIERS:
        raise ParamError(f"profile baseline '{spec}': give FEATURES-CLASSIFIER, classifier one of {', '.join(CLASSIFIERS)}")
    return feature_set, classifier


def baseline_deps(spec: str) -> list[str]:
    from .baselines.features import parse_feature_set

    feature_set, _ = baseline_parts(spec)
    return slots([input_path(n) for n in parse_feature_set(feature_set)], BASELINE_SLOTS, f"baseline {spec}")


def baseline_name(spec: str) -> str:
    """The name of a baseline's metrics and predictions files: baseline_<features>_<classifier>."""
    feature_set, classifier = baseline_parts(spec)
    return f"baseline_{feature_set}_{classifier}"


def run_section(params: dict, profile: str) -> dict:
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
    needed = {Path(path).name for entry in [*models.values(), *baselines.values(), *folds.values()]
              for path in entry["deps"] if path.startswith("data/features/")}
    from .encoders.registry import modality_of

    # the second parameter key each encode stage depends on: the log-mel settings for the spectrogram embedding
    # (it embeds the log-mel image), else its own key again
    encoders = {m: {name: {"param": f"features.audio.{'logmel' if name == 'spectrogram' else name}"
                           if m == "audio" else f"features.video.{name}"}
                    for name in sorted(needed) if modality_of(name) == m} for m in ("video", "audio")}
    return {"profile": profile, "encode_video": encoders["video"], "encode_audio": encoders["audio"],
            "models": models, "baselines": baselines, "cv_folds": folds,
            "cv_summaries": {name: {"dir": f"metrics/cv/{name}"} for name in summaries}, "ensemble": ensemble}


def write_profile(path: Path, profile: str | None = None) -> dict:
    """Rewrite params.yaml `run` (and `profile`) in place, keeping every comment of the file."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    data = yaml.load(path.read_text())
    profile = profile or data.get("profile", "default")
    run = run_section(data, profile)
    data["profile"] = profile
    data["run"] = run
    with open(path, "w") as handle:
        yaml.dump(data, handle)
    return run


def main(argv: list[str] | None = None) -> None:
    import argparse

    from .io import load_params
    from .stage import run_stage

    parser = argparse.ArgumentParser(prog="avemo profile", description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="a key of params.yaml profiles (default: params.yaml profile)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--check", action="store_true", help="only say whether `run` matches the profile")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def body():
        params = load_params(path=args.params)
        profile = args.name or params.get("profile", "default")
        if args.check:
            if params.get("run") != run_section(params, profile) or params.get("profile") != profile:
                print(f"{args.params}: `run` does not match profile '{profile}'; run `avemo profile {profile}`")
                sys.exit(1)
            print(f"{args.params}: `run` matches profile '{profile}'")
            return
        run = write_profile(args.params, profile)
        print(f"{args.params}: profile '{profile}': {len(run['models'])} models, {len(run['baselines'])} baselines, "
              f"{len(run['cv_folds'])} cross-validation folds, ensemble of {len(run['ensemble']['candidates'])}")

    run_stage(body)
