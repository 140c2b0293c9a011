import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# One OpenMP thread in the test process and (inherited) in every stage it starts, set before torch or
# CTranslate2 load: the machine's 2 cores are shared, and the Whisper encoder's float16 outputs differ in the
# last bit between OpenMP thread counts, so predict in this process must run as the encode stages did.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import avemo  # noqa: E402,F401  before any test module loads torch: the CPU kernels pinned as in the stages


def shared_dir() -> Path:
    """The workplace's shared data (ravdess-lite, ravdess-720p): AVEMO_SHARED, else ../shared beside the repo."""
    return Path(os.environ.get("AVEMO_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """As the CLI and the encode stages do: on a busy 2-core CPU, 2 spinning torch threads are 10-100x slower,
    and the thread count changes the last bits of the encoders' outputs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def lite_dir() -> Path:
    path = shared_dir() / "ravdess-lite"
    if not (path / "MD5SUMS").exists():
        pytest.skip(f"{path}: ravdess-lite mirror not present (set AVEMO_SHARED)")
    return path


@pytest.fixture(scope="session")
def hd_dir() -> Path:
    path = shared_dir() / "ravdess-720p" / "Actor_01"
    if not path.exists():
        pytest.skip(f"{path}: ravdess-720p files not present (set AVEMO_SHARED)")
    return path


@pytest.fixture(scope="session")
def ffmpeg():
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()

    def run(*args):
        subprocess.run([exe, "-y", "-loglevel", "error", *map(str, args)], check=True)
    return run


@pytest.fixture
def sample_zip(tmp_path) -> Path:
    """A copy of one embedded-sample archive (8 real clips of actor 01)."""
    target = tmp_path / "Video_Speech_Actor_01.zip"
    shutil.copy(ROOT / "data" / "sample" / target.name, target)
    return target


def venv_env(**extra) -> dict:
    """The environment of a child process: this interpreter's bin first on PATH (dvc, python, avemo),
    no Hugging Face network access, the OpenMP thread count of this process (see above)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(cwd: Path, script: str, *args, timeout: float = 900, env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """`python <script> ARGS` in `cwd` (a stage script of the project copy, or any path)."""
    done = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=cwd, text=True, capture_output=True,
                          timeout=timeout, env=env or venv_env())
    if check:
        assert done.returncode == 0, f"{script} {' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n" \
                                     f"{done.stderr[-5000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-5000:]
    return done


def sample_project(where: Path, actors, items=("dvc.yaml", "params.yaml", "run.yaml", ".dvcignore", "stages",
                                                "avemo")) -> dict:
    """A copy of the project in `where` whose embedded sample holds only `actors` (two-digit ids), with
    tiny preprocessing (4 face crops of 48 px per clip, one worker process). Returns the params dict for
    the caller to adjust and write back with `write_params`."""
    import yaml

    where.mkdir(parents=True, exist_ok=True)
    for item in items:
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy
        copy(ROOT / item, where / item, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                          if (ROOT / item).is_dir() else {}))
    sample = where / "data" / "sample"
    sample.mkdir(parents=True)
    sums = [line for line in (ROOT / "data/sample/MD5SUMS").read_text().splitlines()
            if any(f"Actor_{a}.zip" in line for a in actors)]
    (sample / "MD5SUMS").write_text("\n".join(sums) + "\n")
    for actor in actors:
        shutil.copy(ROOT / f"data/sample/Video_Speech_Actor_{actor}.zip", sample)
    params = yaml.safe_load((where / "params.yaml").read_text())
    params["faces"].update(n_frames=4, crop_px=48, workers=1)
    params["audio"]["workers"] = 1
    return params


def write_params(where: Path, params: dict) -> None:
    import yaml

    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def sample_clip_names(actors) -> list[str]:
    """The audio+video clip ids of the embedded sample's archives of `actors` (read from the zips)."""
    names = []
    for actor in actors:
        with zipfile.ZipFile(ROOT / f"data/sample/Video_Speech_Actor_{actor}.zip") as archive:
            names += [Path(n).stem for n in archive.namelist() if Path(n).name.startswith("01-")
                      and n.endswith(".mp4")]
    return sorted(names)


# ------------------------------------------------------------------ the session's real sample data

SAMPLE_ACTORS = ("01", "02", "03", "04", "13", "17", "18")  # train 1-4, validation 13, test 17 and 18
SAMPLE_SPLIT = {"test_actors": [17, 18], "val_actors": [13]}
VIDEO_ENCODERS = ("fer", "imagenet")


class SampleData:
    """A project copy whose data/ holds the real stages' outputs on 7 actors of the embedded sample
    (56 clips): download, extract_audio, faces (MTCNN, 4 crops of 48 px); encoders are run (the real
    stage script, `stages/encode.py`) the first time a test asks for their input."""

    def __init__(self, root: Path):
        self.root = root
        self.raw, self.audio, self.faces = root / "data/raw", root / "data/audio", root / "data/faces"
        self.metadata = self.raw / "metadata.csv"
        self.cache = root / "data/cache"

    def run(self, script: str, *args, **kw) -> subprocess.CompletedProcess:
        return run_script(self.root, script, *args, **kw)

    def params(self) -> dict:
        from avemo.io import load_params

        return load_params(path=self.root / "params.yaml")

    def features(self, name: str) -> Path:
        """data/features/NAME, made by the encode stage on first use."""
        out = self.root / "data/features" / name
        if not (out / "info.json").exists():
            source = self.faces if name in VIDEO_ENCODERS else self.audio
            self.run("stages/encode.py", "--input", name, "--source", source, "--out", out, "--cache", self.cache)
        return out

    def input_path(self, name: str) -> Path:
        return self.faces if name == "frames" else self.features(name)

    def model_config(self, name: str, checkpoint: Path, entry: dict | None = None, **train) -> dict:
        """`avemo.config.model_config` of model `name` (params.yaml's entry, or `entry`) on this data, with
        `train` overriding its training settings; every input it declares is encoded first."""
        from avemo.config import model_config
        from avemo.models import model_inputs

        params = self.params()
        if entry is not None:
            params["models"][name] = entry
        entry = params["models"][name]
        inputs = [str(self.input_path(n)) for n in model_inputs(entry["architecture"], entry.get("args", {}))]
        cfg = model_config(params, name, inputs=inputs, metadata=str(self.metadata), checkpoint=str(checkpoint))
        cfg["train"].update(train)
        cfg["runtime"] = {"device": "cpu", "resume": False}
        return cfg


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> SampleData:
    root = tmp_path_factory.mktemp("sample-data")
    params = sample_project(root, SAMPLE_ACTORS, items=("params.yaml", "stages", "avemo"))
    params["split"] = dict(SAMPLE_SPLIT)
    write_params(root, params)
    data = SampleData(root)
    data.run("stages/download.py", "--sample-dir", "data/sample", "--archives", "data/archives", "--out", "data/raw")
    data.run("stages/extract_audio.py", "--raw", "data/raw", "--out", "data/audio", "--cache", "data/cache")
    data.run("stages/faces.py", "--raw", "data/raw", "--out", "data/faces", "--cache", "data/cache")
    return data


def train_tiny(data: SampleData, name: str, where: Path, entry: dict | None = None, **train):
    """Train model `name` in-process (avemo.training.train) on the sample data; returns (checkpoint, metrics)."""
    from avemo.training import train as train_model

    checkpoint = where / f"{name}.pt"
    settings = {"epochs": 25, "patience": 25, "batch_size": 16, "augment": False}
    settings.update(train)
    cfg = data.model_config(name, checkpoint, entry, **settings)
    metrics = train_model(cfg)
    return checkpoint, metrics


@pytest.fixture(scope="session")
def trained_models(sample_data, tmp_path_factory) -> Path:
    """A models directory of real tiny models trained on the sample data (new checkpoint format):
    video `fer_linear` (FER2013 features), audio `whisper_linear` (Whisper states), audio+video
    `av_late_fusion` (both)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        where = tmp_path_factory.mktemp("models")
        for name in ("fer_linear", "whisper_linear", "av_late_fusion"):
            train_tiny(sample_data, name, where)
        return where
    finally:
        torch.set_num_threads(threads)
