"""The encoder registry: every encoder that a module of avemo/encoders declares loads here (offline, or with
random weights where no offline copy exists), gives its documented shape on a real clip through the one
per-clip path, and has a modality; nothing else in the package lists encoder names."""
import ast
import re

import numpy as np
import pytest

from conftest import ROOT

from avemo.audio import extract_audio, load_wav
from avemo.encoders.registry import code_files, encoder_modules, load_encoder, names, spec_of, specs
from avemo.errors import ParamError, StageError
from avemo.faces.clip import crop_faces
from avemo.io import load_params
from avemo.modality import modality
from avemo.pipeline import input_path
from avemo.preprocess import audio_inputs, face_inputs, strip_round_trip

PARAMS = load_params(path=ROOT / "params.yaml")
CLIP = "01-01-01-01-01-01-01.mp4"  # neutral, actor 01, 720p with speech

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip(hd_dir, tmp_path_factory) -> dict:
    """16 face crops (params.yaml `faces`, read back from the JPEG strip) and the 16 kHz audio of a real clip."""
    wav = tmp_path_factory.mktemp("registry") / "clip.wav"
    audio = PARAMS["audio"]
    assert extract_audio(hd_dir / CLIP, wav, audio["sample_rate"]).status == "ok"
    return {"crops": strip_round_trip(crop_faces(hd_dir / CLIP, PARAMS["faces"]).crops),
            "samples": load_wav(wav, audio["sample_rate"])}


def loaded(name: str):
    """The encoder with params.yaml's settings; where its weights cannot be had here, with random weights."""
    spec = spec_of(name)
    cfg = PARAMS["features"][spec.modality][name] or {}
    try:
        return load_encoder(name, cfg, PARAMS["audio"]["sample_rate"], PARAMS["features"]["audio"]["logmel"])
    except StageError:
        if spec.random_weights is None:
            raise
        return load_encoder(name, {**cfg, **spec.random_weights}, PARAMS["audio"]["sample_rate"],
                            PARAMS["features"]["audio"]["logmel"])


@pytest.mark.parametrize("name", names())
def test_every_registered_encoder_loads_and_gives_its_documented_shape(clip, name):
    spec, encoder = spec_of(name), loaded(name)
    assert (encoder.name, encoder.modality) == (name, spec.modality) and encoder.weights
    if spec.modality == "video":
        values = face_inputs(clip["crops"], {name: encoder})[name]
    else:
        values = audio_inputs(clip["samples"], PARAMS["audio"], {name: encoder})[name]
    assert values.shape == spec.shape, (name, values.shape)
    assert values.dtype == np.float32 and np.isfinite(values).all() and values.std() > 0


@pytest.mark.parametrize("name", names())
def test_every_registered_encoder_has_a_modality_settings_and_code(name):
    spec = spec_of(name)
    assert spec.modality in ("video", "audio")
    assert modality({name: {"modality": spec.modality}}) == spec.modality  # never "none"
    assert set(spec.keys) <= set(PARAMS["features"][spec.modality][name] or {})  # its settings in params.yaml
    assert spec.reads is None or spec.reads.startswith("features.")
    assert all(path.is_file() for path in code_files(name))
    assert input_path(name) == f"data/features/{name}"


def test_the_registry_finds_the_modules_that_declare_encoders():
    modules = {path.name for path in encoder_modules()}
    assert {"fer.py", "imagenet.py", "whisper.py", "signal.py"} <= modules
    assert not {"registry.py", "spec.py", "encode_clips.py"} & modules
    assert {spec.module for spec in specs().values()} == modules
    assert len(names()) == len(set(names())) >= 10


def test_no_other_module_lists_encoder_names():
    """A tuple, list or set literal naming two encoders or more is a second list of them: only the encoders'
    own modules may hold one (the registry is the one list)."""
    encoders, own = set(names()), {path.resolve() for path in encoder_modules()}
    found = []
    for path in sorted((ROOT / "avemo").rglob("*.py")):
        if path.resolve() in own:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                listed = {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in encoders}
                if len(listed) >= 2:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {sorted(listed)}")
    assert found == [], found


def test_an_unknown_encoder_in_a_profile_is_named_with_the_known_ones():
    with pytest.raises(Exception, match=re.escape("encoder 'vggish' unknown; choose one of: " + ", ".join(names()))):
        input_path("vggish")


def test_fer_test_time_views_change_the_features_keep_their_shape_and_the_cache_key(clip, tmp_path):
    from avemo.cache import ClipCache

    cfg = {k: v for k, v in PARAMS["features"]["video"]["fer"].items() if k != "tta"}
    plain = load_encoder("fer", cfg)  # a released model's settings name no views: as before they existed
    before = face_inputs(clip["crops"], {"fer": plain})["fer"]
    assert np.array_equal(before, face_inputs(clip["crops"], {"fer": load_encoder("fer", {**cfg, "tta": "none"})})["fer"])
    mirrored = face_inputs(clip["crops"][:, :, ::-1], {"fer": plain})["fer"]
    for tta in ("flip", "flip_zoom"):
        encoder = load_encoder("fer", {**cfg, "tta": tta})
        values = face_inputs(clip["crops"], {"fer": encoder})["fer"]
        assert values.shape == before.shape == spec_of("fer").shape and np.isfinite(values).all()
        assert np.abs(values - before).max() > 0.01  # the views' average, not the plain crop's outputs
        key = ClipCache(tmp_path, "encode_fer", encoder.config).key(ROOT / "params.yaml")
        assert key != ClipCache(tmp_path, "encode_fer", plain.config).key(ROOT / "params.yaml")
    flip = face_inputs(clip["crops"], {"fer": load_encoder("fer", {**cfg, "tta": "flip"})})["fer"]
    # the mirrored crops' outputs are averaged in (up to the one-pixel offset of the central crop)
    assert np.abs(flip - (before + mirrored) / 2).mean() < np.abs(flip - before).mean() / 2


def test_an_unknown_fer_view_set_is_named_with_the_known_ones():
    with pytest.raises(ParamError, match="features.video.fer.tta: 'rotate'; give one of none, flip, flip_zoom"):
        load_encoder("fer", {**PARAMS["features"]["video"]["fer"], "tta": "rotate"})
