"""No parameter change is served from a stale cache. DVC's run cache keys a stage by a hash of its lock entry
with every key named `size` or `nfiles` dropped at any depth (dvc/stage/cache.py `_get_cache_hash`, the
exclusion meant for output metadata; treeverse/dvc#10296), so a parameter of that name never reruns its stage:
`dvc repro` restores the old outputs and records the new value. Here every stage of the `full` profile, and
every parameter leaf each lists, goes through that very code; the Whisper model key also through a real
`dvc exp run -S`."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, sample_project, venv_env, write_params

RUN_CACHE_BLIND = {"size", "nfiles"}  # dvc_data Meta.PARAM_SIZE, Meta.PARAM_NFILES


def blind_keys(value, where: str = "") -> list[str]:
    """Dotted paths of every key named size/nfiles in a parsed YAML document (inside lists too)."""
    found = []
    if isinstance(value, dict):
        for key, sub in value.items():
            path = f"{where}.{key}" if where else str(key)
            found += [path] if key in RUN_CACHE_BLIND else []
            found += blind_keys(sub, path)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found += blind_keys(sub, f"{where}[{i}]")
    return found


def params_files(root: Path) -> list[Path]:
    """params.yaml and any other parameter file the pipeline reads (every YAML file at the top but dvc.yaml)."""
    return sorted(p for p in root.glob("*.yaml") if p.name != "dvc.yaml")


def test_no_parameter_is_named_size_or_nfiles():
    for path in params_files(ROOT):
        assert blind_keys(yaml.safe_load(path.read_text())) == [], f"{path.name}: keys DVC's run cache ignores"


def test_the_blind_key_check_finds_nested_keys():
    assert blind_keys({"a": {"size": 1}, "b": [{"nfiles": 2}], "c": {"sizes": 3}}) == ["a.size", "b[0].nfiles"]


def leaves(value, where: tuple) -> list[tuple]:
    """Key paths of a parameter's leaves (a list counts as one value)."""
    if isinstance(value, dict) and value:
        return [leaf for key, sub in value.items() for leaf in leaves(sub, (*where, key))]
    return [where]


def changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, list):
        return value + value[-1:] if value else [0]
    if isinstance(value, dict):
        return {"added": 1}
    return 1  # null


def edited(document: dict, path: tuple) -> dict:
    """A copy of `document` with the value at `path` changed."""
    document = copy.deepcopy(document)
    *parents, last = path
    inner = document
    for key in parents:
        inner = inner[key]
    inner[last] = changed(inner[last])
    return document


@pytest.fixture(scope="module")
def full_project(tmp_path_factory) -> Path:
    """dvc.yaml and the parameter files in a DVC project, every stage of the `full` profile instantiated."""
    project = tmp_path_factory.mktemp("coverage")
    for path in [ROOT / "dvc.yaml", *params_files(ROOT)]:
        (project / path.name).write_text(path.read_text())
    for command in (["avemo.cli", "profile", "full"], ["dvc", "init", "--no-scm", "-q"]):
        done = subprocess.run([sys.executable, "-m", *command], cwd=project, env=venv_env(), text=True,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
    return project


@pytest.fixture(scope="module")
def lock_entries(full_project) -> dict[str, dict]:
    """stage name -> its lock entry as `dvc repro` builds it (parameter values read from their files by
    DVC, each file parsed once; deps and outs without content hashes, the same whatever the parameters)."""
    import dvc.dependency.param as param
    from dvc.repo import Repo
    from dvc.stage.serialize import to_single_stage_lockfile

    parsed = {}

    def load_once(path, fs, **kwargs):
        if path not in parsed:
            parsed[path] = load_path(path, fs, **kwargs)
        return parsed[path]

    load_path = param.load_path
    with pytest.MonkeyPatch.context() as patch, Repo(str(full_project)) as repo:
        patch.setattr(param, "load_path", load_once)
        entries = {}
        for stage in repo.index.stages:
            for dep in stage.params:
                dep.save()
            entries[stage.name] = to_single_stage_lockfile(stage)
    assert parsed, "DVC read no parameter file"
    return entries


def run_cache_key(entry: dict) -> str:
    """The key DVC's run cache files and looks up a stage's run under (dvc.stage.cache._get_stage_hash)."""
    from dvc.stage.cache import _get_cache_hash

    return _get_cache_hash(dict(entry), key=True)  # it replaces the outs of the dict it is given


def test_every_listed_parameter_changes_its_stages_run_cache_key(lock_entries):
    """For each stage and each parameter leaf it lists: changing that leaf alone changes the stage's run-cache
    key, so `dvc repro` runs the stage instead of restoring outputs made with the old value."""
    entries = lock_entries
    assert {"download", "faces", "encode_audio@whisper", "train@whisper_linear", "evaluate@whisper_linear",
            "cv_fold@whisper_linear-0", "cv_summary@whisper_linear", "ensemble"} <= set(entries), sorted(entries)
    blind, checked = [], 0
    for name, entry in entries.items():
        key = run_cache_key(entry)
        for file, values in entry.get("params", {}).items():
            for leaf in leaves(values, ()):
                changed_entry = {**entry, "params": {**entry["params"], file: edited(values, leaf)}}
                checked += 1
                if run_cache_key(changed_entry) == key:
                    blind.append(f"{name}: {file} {'.'.join(map(str, leaf))}")
    assert blind == [], "parameter changes DVC's run cache would not see:\n" + "\n".join(blind)
    assert checked > 10 * len(entries), checked


def test_a_parameter_named_size_is_what_the_run_cache_misses(lock_entries):
    """The check above can fail: the same code path does not see a change of the Whisper model under its
    former name `size`."""
    entry = lock_entries["encode_audio@whisper"]
    whisper = entry["params"]["params.yaml"]["features.audio.whisper"]
    former = {key if key != "model" else "size": value for key, value in whisper.items()}

    def with_whisper(cfg):
        return {**entry, "params": {"params.yaml": {**entry["params"]["params.yaml"], "features.audio.whisper": cfg}}}

    assert run_cache_key(with_whisper({**former, "size": "large-v3"})) == run_cache_key(with_whisper(former))
    assert run_cache_key(with_whisper({**whisper, "model": "large-v3"})) != run_cache_key(entry)


def dvc(project: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=venv_env(), text=True,
                          capture_output=True, timeout=900)
    if check:
        assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def git(project: Path, *args) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args], cwd=project,
                   check=True, capture_output=True, timeout=120)


@pytest.mark.slow
def test_exp_run_with_another_whisper_model_reruns_the_whisper_encoder(tmp_path):
    """A real project (one actor of the embedded sample, git + DVC): the Whisper features are made and in the
    run cache; `dvc exp run -S features.audio.whisper.model=small` then runs the Whisper encode stage (here it
    stops, naming the model it cannot load offline) instead of restoring the base features under `small`."""
    project = tmp_path / "project"
    params = sample_project(project, ["01"])
    params["data"]["actors"] = [1]
    write_params(project, params)
    git(project, "init", "-q")
    dvc(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "tiny project")
    first = dvc(project, "repro", "encode_audio@whisper")
    assert "Running stage 'encode_audio@whisper'" in first.stdout
    git(project, "add", "-A")
    git(project, "commit", "-qm", "base features")
    again = dvc(project, "exp", "run", "-S", "features.audio.whisper.model=small", "encode_audio@whisper",
                check=False)
    log = again.stdout + again.stderr
    assert "Running stage 'encode_audio@whisper'" in log, log[-3000:]
    assert "is cached - skipping run" not in log, log[-3000:]
    assert again.returncode != 0 and "Whisper 'small': cannot load the model" in log, log[-3000:]
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["encode_audio@whisper"]["params"]["params.yaml"]["features.audio.whisper"]["model"] == "base"
