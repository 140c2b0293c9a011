"""dvc.yaml says exactly what each stage reads: the project modules its script imports (transitively), only
the parameter keys that change its result, and the input slots params.yaml `run` derives from each model's
declared inputs (`avemo profile`)."""
import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, venv_env
from imports import relative, transitive

from avemo.baselines.features import parse_feature_set
from avemo.models import model_inputs
from avemo.pipeline import BASELINE_SLOTS, ENSEMBLE_SLOTS, INPUT_SLOTS, input_path, run_section

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
STAGES = {name: stage.get("do", stage) for name, stage in DVC["stages"].items()}
NOT_RESULTS = ("workers", "threads")  # how many processes / threads: never what a stage computes


def script_of(body: dict) -> str | None:
    found = re.findall(r"\bstages/\w+\.py\b", body["cmd"])
    return found[0] if found else None


def test_every_stage_runs_one_stage_script():
    for name, body in STAGES.items():
        script = script_of(body)
        assert script is not None and (ROOT / script).is_file(), name
        assert script in body["deps"], f"{name}: its script {script} is not among its deps"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_exactly_the_modules_its_script_imports(name):
    body = STAGES[name]
    needed = set(relative(transitive(ROOT / script_of(body))))
    listed = {d for d in body["deps"] if isinstance(d, str) and d.startswith("avemo/")}
    assert not needed - listed, f"{name}: imported but not in deps: {sorted(needed - listed)}"
    assert not listed - needed, f"{name}: in deps but never imported: {sorted(listed - needed)}"
    assert all((ROOT / d).is_file() for d in listed)


def test_the_import_walk_follows_imports_inside_functions_and_package_inits():
    train = set(relative(transitive(ROOT / "stages/train.py")))
    # stages/train.py -> avemo.training (package __init__) -> loop -> triplets; inside functions too
    assert {"avemo/__init__.py", "avemo/training/__init__.py", "avemo/training/loop.py", "avemo/triplets.py",
            "avemo/models/late.py"} <= train
    assert "avemo/predict/cli.py" not in train and "avemo/encoders/whisper.py" not in train
    baseline = set(relative(transitive(ROOT / "stages/baselines.py")))
    assert "avemo/baselines/fit.py" in baseline and "avemo/training/loop.py" not in baseline


def foreach_items(name: str) -> list[tuple[str, dict]]:
    """(key, item) of every entry a foreach stage runs over, in any profile's `run` section; [("", {})] for
    a stage without foreach."""
    stage = DVC["stages"][name]
    if "foreach" not in stage:
        return [("", {})]
    section = stage["foreach"].removeprefix("${").removesuffix("}").split(".")[1]
    items = {}
    for profile in PARAMS["profiles"]:
        items.update(run_section(PARAMS, profile)[section])
    return sorted(items.items())


def resolved_params(entry: str, key: str, item: dict) -> tuple[str, object]:
    """A stage's params entry with ${key} and ${item.X} of one foreach entry resolved -> (name, value)."""
    name = entry.replace("${key}", key)
    for field, value in (item or {}).items():
        if isinstance(value, str):
            name = name.replace(f"${{item.{field}}}", value)
    assert "${" not in name, f"params entry {entry}: unresolved for {key}"
    value = PARAMS
    for part in name.split("."):
        assert isinstance(value, dict) and part in value, f"params entry {name}: not in params.yaml"
        value = value[part]
    return name, value


def keys_of(value) -> set[str]:
    if not isinstance(value, dict):
        return set()
    return set(value) | {k for v in value.values() for k in keys_of(v)}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_leave_out_runtime_and_workers(name):
    for entry in STAGES[name].get("params", []):
        entry = entry if isinstance(entry, str) else next(iter(entry))
        assert not entry.startswith("runtime"), f"{name}: depends on {entry}"
        for foreach_key, item in foreach_items(name):
            key, value = resolved_params(entry, foreach_key, item)
            assert not key.startswith("runtime"), f"{name}: depends on {key}"
            assert key.split(".")[-1] not in NOT_RESULTS, f"{name}: depends on {key}"
            assert not keys_of(value) & set(NOT_RESULTS), f"{name}: {key} holds {keys_of(value) & set(NOT_RESULTS)}"
            assert not keys_of(value) & {"device", "resume"}, f"{name}: {key} holds runtime choices"


def test_per_clip_stages_list_every_key_they_compute_with():
    """The faces stage crops with every key of `faces` but workers; extract_audio resamples with
    audio.sample_rate; an audio encoder reads its settings and the window."""
    listed = lambda stage: set(STAGES[stage]["params"])  # noqa: E731
    assert listed("faces") == {f"faces.{k}" for k in PARAMS["faces"] if k != "workers"}
    assert listed("extract_audio") == {"audio.sample_rate"}
    assert {"split", "train_defaults", "models.${key}"} == listed("train")
    window = {"audio.sample_rate", "audio.offset_s", "audio.duration_s"}
    for stage, modality in (("encode_video", "video"), ("encode_audio", "audio")):
        for key, item in foreach_items(stage):
            used = {resolved_params(entry, key, item)[0] for entry in STAGES[stage]["params"]}
            own = {f"features.{modality}.{key}"} | (window if modality == "audio" else set())
            if key == "spectrogram":  # it embeds the log-mel image
                own.add("features.audio.logmel")
            assert used == own, (stage, key, sorted(used))


def test_avemo_profile_check_passes_for_params_yaml_as_committed(tmp_path):
    done = subprocess.run([sys.executable, "-m", "avemo.cli", "profile", "--check", "--params",
                           str(ROOT / "params.yaml")], capture_output=True, text=True, env=venv_env(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"`run` matches profile '{PARAMS['profile']}'" in done.stdout
    stale = copy.deepcopy(PARAMS)
    stale["run"]["models"].pop(next(iter(stale["run"]["models"])))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(stale, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "avemo.cli", "profile", "--check", "--params",
                           str(tmp_path / "params.yaml")], capture_output=True, text=True, env=venv_env(), timeout=120)
    assert done.returncode == 1 and "does not match profile" in done.stdout and "avemo profile" in done.stdout


def expected_slots(paths: list[str], count: int) -> list[str]:
    unique = list(dict.fromkeys(paths))
    return unique + [unique[-1]] * (count - len(unique))


@pytest.mark.parametrize("profile", sorted(PARAMS["profiles"]))
def test_run_input_slots_are_each_models_declared_inputs(profile):
    run = PARAMS["run"] if profile == PARAMS["profile"] else run_section(PARAMS, profile)
    spec = PARAMS["profiles"][profile]
    assert list(run["models"]) == spec["models"]
    encoders = set()
    for name, entry in run["models"].items():
        model = PARAMS["models"][name]
        inputs = model_inputs(model["architecture"], model.get("args", {}))
        assert entry["deps"] == expected_slots([input_path(i) for i in inputs], INPUT_SLOTS), name
        assert entry["deps"][0] == ("data/faces" if inputs[0] == "frames" else f"data/features/{inputs[0]}")
        encoders |= {i for i in inputs if i != "frames"}
    for spec_name, entry in run["baselines"].items():
        features, classifier = spec_name.split("-")
        assert (entry["features"], entry["classifier"]) == (features, classifier)
        assert entry["name"] == f"baseline_{features}_{classifier}"
        assert entry["deps"] == expected_slots([f"data/features/{n}" for n in parse_feature_set(features)],
                                               BASELINE_SLOTS)
        encoders |= set(parse_feature_set(features))
    for fold in run["cv_folds"].values():
        encoders |= {Path(d).name for d in fold["deps"] if d.startswith("data/features/")}
    assert set(run["encode_video"]) | set(run["encode_audio"]) == encoders
    assert set(run["encode_video"]) <= {"fer", "imagenet"}
    candidates = run["ensemble"]["candidates"]
    assert run["ensemble"]["deps"] == expected_slots([f"metrics/predictions/{c}.csv" for c in candidates],
                                                     ENSEMBLE_SLOTS)
    produced = set(run["models"]) | {b["name"] for b in run["baselines"].values()}
    assert set(candidates) <= produced  # every candidate's predictions come from a stage of the profile


def test_dvc_yaml_passes_the_slots_it_depends_on():
    """A stage script reads exactly the files of its slots: the command's --inputs are its deps."""
    for name, count in (("train", INPUT_SLOTS), ("evaluate", INPUT_SLOTS), ("baselines", BASELINE_SLOTS),
                        ("cv_fold", INPUT_SLOTS)):
        body = STAGES[name]
        slots = [f"${{item.deps[{i}]}}" for i in range(count)]
        assert [d for d in body["deps"] if isinstance(d, str) and d.startswith("${item.deps")] == slots, name
        if name != "evaluate":
            assert "--inputs " + " ".join(slots) in " ".join(body["cmd"].split()), name
    ensemble = [d for d in STAGES["ensemble"]["deps"] if d.startswith("${run.ensemble")]
    assert ensemble == [f"${{run.ensemble.deps[{i}]}}" for i in range(ENSEMBLE_SLOTS)]
    assert "run.ensemble.candidates" in STAGES["ensemble"]["params"]


def test_every_model_of_params_yaml_fits_the_input_slots():
    for name, model in PARAMS["models"].items():
        inputs = model_inputs(model["architecture"], model.get("args", {}))
        assert 1 <= len(set(inputs)) <= INPUT_SLOTS, name


def test_avemo_profile_rewrites_run_and_keeps_every_comment(tmp_path):
    from avemo.io import load_params
    from avemo.pipeline import main as profile_main, write_profile

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    comments = [line.strip() for line in path.read_text().splitlines() if line.strip().startswith("#")]
    run = write_profile(path, "full")
    written = load_params(path=path)
    assert written["profile"] == "full" and written["run"] == run == run_section(written, "full")
    assert len(run["models"]) == len(PARAMS["profiles"]["full"]["models"]) and run["cv_folds"]
    assert all(comment in path.read_text() for comment in comments)
    profile_main(["--check", "--params", str(path)])  # passes: exits only on a mismatch
    with pytest.raises(SystemExit) as stale:
        profile_main(["default", "--check", "--params", str(path)])
    assert stale.value.code == 1
