"""dvc.yaml says exactly what each stage reads: the project modules its script imports (transitively, written
by `avemo profile`), only the parameter keys that change its result, and the input slots run.yaml derives
from each model's declared inputs (`avemo profile`)."""
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, venv_env

from avemo.baselines.features import parse_feature_set
from avemo.encoders.registry import spec_of
from avemo.models import model_inputs
from avemo.pipeline import BASELINE_SLOTS, ENSEMBLE_SLOTS, INPUT_SLOTS, input_path, run_section
from avemo.stage_deps import relative, stage_code, transitive

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
RUN = yaml.safe_load((ROOT / "run.yaml").read_text())["run"]
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


def files_of(listed) -> set[str]:
    """dvc.yaml code entries -> the files they cover (a package folder: every module under it)."""
    out = set()
    for entry in listed:
        path = ROOT / entry
        out |= set(relative(path.rglob("*.py"))) if entry.endswith("/") else {entry}
        assert path.exists(), entry
    return out


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_exactly_the_modules_its_script_imports(name):
    body = STAGES[name]
    needed = set(relative(transitive(ROOT / script_of(body))))
    code = [d for d in body["deps"] if isinstance(d, str) and d.startswith("avemo/")]
    listed = files_of(code)
    assert not needed - listed, f"{name}: imported but not in deps: {sorted(needed - listed)}; run `avemo profile`"
    assert not listed - needed, f"{name}: in deps but never imported: {sorted(listed - needed)}; run `avemo profile`"
    assert code == stage_code(script_of(body)), f"{name}: run `avemo profile` to rewrite its code list"


def test_model_stages_run_no_detector_and_no_encoder_code():
    """Editing MTCNN re-crops faces but retrains no model; editing an encoder re-encodes and retrains no
    network (the classical baselines pool each input as its encoder declares: they read the registry)."""
    for stage in ("train", "evaluate", "baselines", "cv_fold", "ensemble", "cv_summary"):
        code = files_of(d for d in STAGES[stage]["deps"] if isinstance(d, str) and d.startswith("avemo/"))
        assert not {"avemo/faces/mtcnn.py", "avemo/faces/detect.py", "avemo/faces/decode.py",
                    "avemo/faces/clip.py"} & code, stage
        if stage not in ("baselines", "cv_fold"):
            assert not {"avemo/encoders/whisper.py", "avemo/encoders/fer.py"} & code, stage
    assert "avemo/faces/" in STAGES["faces"]["deps"]


def test_the_import_walk_follows_imports_inside_functions_and_package_inits():
    train = set(relative(transitive(ROOT / "stages/train.py")))
    # stages/train.py -> avemo.training (package __init__) -> loop -> triplets; inside functions too
    assert {"avemo/__init__.py", "avemo/training/__init__.py", "avemo/training/loop.py", "avemo/triplets.py",
            "avemo/models/late.py"} <= train
    assert "avemo/predict/cli.py" not in train and "avemo/encoders/whisper.py" not in train
    baseline = set(relative(transitive(ROOT / "stages/baselines.py")))
    assert "avemo/baselines/fit.py" in baseline and "avemo/training/loop.py" not in baseline
    encode = set(relative(transitive(ROOT / "stages/encode.py")))  # the registry finds the encoder modules
    assert {"avemo/encoders/whisper.py", "avemo/encoders/fer.py", "avemo/encoders/ssl.py"} <= encode


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


def resolved_value(name: str, files=(PARAMS, {"run": RUN})):
    for data in files:
        value = data
        for part in name.split("."):
            if not (isinstance(value, dict) and part in value):
                break
            value = value[part]
        else:
            return value
    raise AssertionError(f"params entry {name}: not in params.yaml nor run.yaml")


def resolved_params(entry: str, key: str, item: dict) -> tuple[str, object]:
    """A stage's params entry with ${key} and ${item.X} of one foreach entry resolved -> (name, value)."""
    name = entry.replace("${key}", key)
    for field, value in (item or {}).items():
        if isinstance(value, str):
            name = name.replace(f"${{item.{field}}}", value)
    assert "${" not in name, f"params entry {entry}: unresolved for {key}"
    return name, resolved_value(name)


def keys_of(value) -> set[str]:
    if not isinstance(value, dict):
        return set()
    return set(value) | {k for v in value.values() for k in keys_of(v)}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_leave_out_runtime_and_workers(name):
    for entry in STAGES[name].get("params", []):
        if isinstance(entry, dict):  # {file: [keys]}: keys of another parameter file (run.yaml)
            entry = next(iter(entry.values()))[0]
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
            if spec_of(key).reads:  # the spectrogram embeds the log-mel image
                own.add(spec_of(key).reads)
            assert used == own, (stage, key, sorted(used))


def profile_check(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avemo.cli", "profile", "--check"], cwd=project,
                          capture_output=True, text=True, env=venv_env(), timeout=120)


def test_avemo_profile_check_passes_for_the_committed_files_and_names_what_is_stale(tmp_path):
    done = profile_check(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run.yaml: matches profile '{RUN['profile']}'; dvc.yaml lists each stage's code" in done.stdout
    for item in ("params.yaml", "run.yaml", "dvc.yaml", "stages", "avemo"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, tmp_path / item)
    stale = copy.deepcopy(RUN)
    stale["models"].pop(next(iter(stale["models"])))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"run": stale}, sort_keys=False))
    dvc = (tmp_path / "dvc.yaml").read_text()
    (tmp_path / "dvc.yaml").write_text(dvc.replace("      - avemo/faces/\n", "      - avemo/faces/crop.py\n", 1))
    done = profile_check(tmp_path)
    assert done.returncode == 1 and "run.yaml: does not match profile 'default'" in done.stdout
    assert "the code listed by stage(s) faces is not what their scripts import" in done.stdout
    assert "run `avemo profile default`" in done.stdout
    fixed = subprocess.run([sys.executable, "-m", "avemo.cli", "profile"], cwd=tmp_path, capture_output=True,
                           text=True, env=venv_env(), timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    assert profile_check(tmp_path).returncode == 0
    assert (tmp_path / "dvc.yaml").read_text() == dvc  # rewritten as committed, comments and all


def expected_slots(paths: list[str], count: int) -> list[str]:
    unique = list(dict.fromkeys(paths))
    return unique + [unique[-1]] * (count - len(unique))


@pytest.mark.parametrize("profile", sorted(PARAMS["profiles"]))
def test_run_input_slots_are_each_models_declared_inputs(profile):
    run = RUN if profile == RUN["profile"] else run_section(PARAMS, profile)
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
    assert {"run.yaml": ["run.ensemble.candidates"]} in STAGES["ensemble"]["params"]


def test_every_model_of_params_yaml_fits_the_input_slots():
    for name, model in PARAMS["models"].items():
        inputs = model_inputs(model["architecture"], model.get("args", {}))
        assert 1 <= len(set(inputs)) <= INPUT_SLOTS, name


def test_avemo_profile_writes_run_yaml_and_leaves_params_yaml_alone(tmp_path):
    from avemo.io import load_params
    from avemo.pipeline import main as profile_main, write_profile

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    run = write_profile(path, "full")
    assert path.read_text() == (ROOT / "params.yaml").read_text()  # the hand-edited file is never rewritten
    written = load_params(path=tmp_path / "run.yaml")["run"]
    assert written["profile"] == "full" and written == run == run_section(PARAMS, "full")
    assert len(run["models"]) == len(PARAMS["profiles"]["full"]["models"]) and run["cv_folds"]
    assert (tmp_path / "run.yaml").read_text().startswith("# Generated by `avemo profile NAME`")
    profile_main(["--check", "--params", str(path)])  # passes: exits only on a mismatch
    with pytest.raises(SystemExit) as stale:
        profile_main(["default", "--check", "--params", str(path)])
    assert stale.value.code == 1


def test_the_profile_lists_live_outside_params_yaml():
    assert "run" not in PARAMS and "profile" not in PARAMS
    assert DVC["vars"] == ["run.yaml"]
