"""The PyTorch Whisper encoder (avemo.encoders.whisper_layers) on real clips of the embedded sample: its final
layer is CTranslate2's `model.encode` output, it loads offline from faster-whisper's files (or the same weights
in the Hugging Face layout), gives the documented shapes through the one per-clip path, reads several windows
over the whole clip when set to, and a classifier on its middle layers learns emotions of actors it never saw."""
import json
import struct
import zipfile

import numpy as np
import pytest

from conftest import ROOT

from avemo.audio import decode_audio
from avemo.encoders.registry import load_encoder
from avemo.encoders.whisper_layers import (encode_layers, load_whisper_layers, log_mel, model_dir,
                                           read_ctranslate2)
from avemo.errors import ParamError, StageError
from avemo.io import load_params
from avemo.preprocess import audio_inputs, audio_window, several_windows

PARAMS = load_params(path=ROOT / "params.yaml")
SAMPLE = ROOT / "data" / "sample"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sample_windows(actors, tmp_path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """(windows, emotion labels 0-7, actors, whole clips' samples) of the embedded sample's clips of `actors`,
    the stages' fixed 3 s window."""
    windows, labels, who, clips = [], [], [], []
    for actor in actors:
        with zipfile.ZipFile(SAMPLE / f"Video_Speech_Actor_{actor:02d}.zip") as archive:
            for member in sorted(n for n in archive.namelist() if n.endswith(".mp4")):
                video = tmp_path / member.split("/")[-1]
                video.write_bytes(archive.read(member))
                samples = decode_audio(video, PARAMS["audio"]["sample_rate"])
                windows.append(audio_window(samples, PARAMS["audio"]))
                clips.append(samples)
                labels.append(int(video.name.split("-")[2]) - 1)
                who.append(actor)
    return np.stack(windows), np.array(labels), np.array(who), clips


@pytest.fixture(scope="module")
def actor_01(tmp_path_factory):
    return sample_windows([1], tmp_path_factory.mktemp("whisper_layers"))


def test_final_layer_equals_ctranslate2_encode_on_real_clips(actor_01, monkeypatch):
    import ctranslate2

    from avemo.encoders.whisper import load_whisper

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    windows = actor_01[0]
    ours = encode_layers(load_whisper_layers("base"), windows, layers=[6], output="sequence", pool=1)[:, 0]
    mel = np.ascontiguousarray(log_mel(windows, 80))
    theirs = np.asarray(load_whisper("base").model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))
    assert ours.shape == theirs.shape == (len(windows), 150, 512)
    cosine = (ours * theirs).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    assert cosine.min() > 0.99999  # per 20 ms step, on every clip (measured 0.9999997)
    assert np.abs(ours - theirs).max() < 0.01 * np.abs(theirs).max()
    # the earlier layers are other representations, not copies of the output
    first = encode_layers(load_whisper_layers("base"), windows, layers=[3], output="sequence", pool=1)[:, 0]
    assert np.abs(first - theirs).mean() > 0.1 * np.abs(theirs).mean()


def test_loads_offline_from_faster_whispers_files(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = model_dir("base")
    assert (folder / "model.bin").is_file()
    variables = read_ctranslate2(folder / "model.bin")
    assert variables["conv1/weight"].shape == (512, 80, 3) and int(variables["num_heads"]) == 8
    assert not any(k.startswith("decoder") for k in variables)


@pytest.mark.parametrize("override, shape", [
    ({}, (7, 1024)),                                         # params.yaml: all 7 states, mean || std
    ({"windows": "fixed"}, (7, 1024)),
    ({"layers": [3]}, (1, 1024)),
    ({"layers": [2, 3, 4], "output": "sequence", "windows": "fixed"}, (3, 50, 512)),  # 150 steps of 20 ms, pooled by 3
])
def test_documented_shapes_through_the_per_clip_path(actor_01, override, shape):
    cfg = {**PARAMS["features"]["audio"]["whisper_layers"], **override}
    encoder = load_encoder("whisper_layers", cfg, PARAMS["audio"]["sample_rate"])
    assert encoder.weights == "whisper-base:openai"
    values = audio_inputs(actor_01[3][0], PARAMS["audio"], {"whisper_layers": encoder})["whisper_layers"]
    assert values.shape == shape and values.dtype == np.float32 and np.isfinite(values).all()
    assert values.std() > 0


def test_bad_settings_are_named():
    cfg = PARAMS["features"]["audio"]["whisper_layers"]
    with pytest.raises(ParamError, match=r"whisper_layers.layers: \[7\]; give `all` or a list of layer numbers 0..6"):
        load_encoder("whisper_layers", {**cfg, "layers": [7]})
    with pytest.raises(ParamError, match="whisper_layers.output: 'mean'; choose one of pooled, sequence"):
        load_encoder("whisper_layers", {**cfg, "output": "mean"})
    with pytest.raises(ParamError, match="whisper_layers.model: 'huge' is neither a folder nor one of tiny"):
        load_encoder("whisper_layers", {**cfg, "model": "huge"})


def test_several_windows_cover_the_whole_clip_one_hop_apart(actor_01):
    audio, hop = PARAMS["audio"], 1.0
    width = int(audio["duration_s"] * audio["sample_rate"])
    for samples in actor_01[3]:
        windows = several_windows(samples, audio, hop)
        starts = [0, *range(16000, len(samples) - width, 16000)]
        assert len(windows) == len(starts) + 1 and len(samples) > width  # every sample clip lasts more than 3 s
        assert all(w.shape == (width,) for w in windows)
        assert [w.tobytes() for w in windows[:-1]] == [samples[s:s + width].tobytes() for s in starts]
        assert windows[-1].tobytes() == samples[-width:].tobytes()  # the last one ends at the clip's end
    short = several_windows(actor_01[3][0][:16000], audio, hop)  # 1 s: one window, padded as the fixed one is
    assert len(short) == 1 and short[0].shape == (width,) and not short[0][16000:].any()


def test_several_windows_average_the_pooled_states_of_each_window(actor_01):
    cfg = {**PARAMS["features"]["audio"]["whisper_layers"], "windows": "several", "hop_s": 1.0}
    several = load_encoder("whisper_layers", cfg, PARAMS["audio"]["sample_rate"])
    fixed = load_encoder("whisper_layers", {**cfg, "windows": "fixed"}, PARAMS["audio"]["sample_rate"])
    samples = max(actor_01[3], key=len)
    windows = several_windows(samples, PARAMS["audio"], 1.0)
    assert len(windows) >= 2
    got = audio_inputs(samples, PARAMS["audio"], {"whisper_layers": several})["whisper_layers"]
    each = encode_layers(load_whisper_layers("base"), np.stack(windows))
    np.testing.assert_allclose(got, each.mean(axis=0), rtol=2e-3, atol=2e-3)  # stored as float16
    alone = audio_inputs(samples, PARAMS["audio"], {"whisper_layers": fixed})["whisper_layers"]
    assert np.abs(got - alone).mean() > 0.01 * np.abs(alone).mean()


@pytest.mark.parametrize("override, message", [
    ({"windows": "many"}, "whisper_layers.windows: 'many'; choose one of fixed, several"),
    ({"windows": "several", "hop_s": 0}, "whisper_layers.hop_s: 0; windows: several needs the seconds"),
    ({"windows": "several", "hop_s": 1.0, "output": "sequence"}, "several averages pooled states; it needs output: pooled"),
])
def test_bad_window_settings_are_named(override, message):
    cfg = {**PARAMS["features"]["audio"]["whisper_layers"], **override}
    with pytest.raises(ParamError, match=message):
        load_encoder("whisper_layers", cfg)


def test_a_folder_without_weights_is_named(tmp_path):
    with pytest.raises(StageError, match=f"{tmp_path}: no model.bin"):
        load_whisper_layers(str(tmp_path))


def write_safetensors(path, tensors: dict[str, np.ndarray]) -> None:
    header, offset, blobs = {}, 0, []
    for name, value in tensors.items():
        raw = np.ascontiguousarray(value, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_hugging_face_weights_give_the_same_states(actor_01, tmp_path, monkeypatch):
    """The base weights written in transformers' WhisperModel layout (separate q/k/v, key without bias) load
    through the Hugging Face path and give the same states as the CTranslate2 file."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    v = read_ctranslate2(model_dir("base") / "model.bin")
    hf = {"model.encoder.conv1.weight": v["conv1/weight"], "model.encoder.conv1.bias": v["conv1/bias"],
          "model.encoder.conv2.weight": v["conv2/weight"], "model.encoder.conv2.bias": v["conv2/bias"],
          "model.encoder.embed_positions.weight": v["position_encodings/encodings"],
          "model.encoder.layer_norm.weight": v["layer_norm/gamma"], "model.encoder.layer_norm.bias": v["layer_norm/beta"]}
    for i in range(6):
        a, b = f"layer_{i}/", f"model.encoder.layers.{i}."
        q, k, val = np.split(v[a + "self_attention/linear_0/weight"], 3)
        qb, kb, vb = np.split(v[a + "self_attention/linear_0/bias"], 3)
        assert not kb.any()  # Whisper's key projection has no bias
        hf.update({b + "self_attn.q_proj.weight": q, b + "self_attn.k_proj.weight": k, b + "self_attn.v_proj.weight": val,
                   b + "self_attn.q_proj.bias": qb, b + "self_attn.v_proj.bias": vb,
                   b + "self_attn.out_proj.weight": v[a + "self_attention/linear_1/weight"],
                   b + "self_attn.out_proj.bias": v[a + "self_attention/linear_1/bias"],
                   b + "self_attn_layer_norm.weight": v[a + "self_attention/layer_norm/gamma"],
                   b + "self_attn_layer_norm.bias": v[a + "self_attention/layer_norm/beta"],
                   b + "final_layer_norm.weight": v[a + "ffn/layer_norm/gamma"],
                   b + "final_layer_norm.bias": v[a + "ffn/layer_norm/beta"],
                   b + "fc1.weight": v[a + "ffn/linear_0/weight"], b + "fc1.bias": v[a + "ffn/linear_0/bias"],
                   b + "fc2.weight": v[a + "ffn/linear_1/weight"], b + "fc2.bias": v[a + "ffn/linear_1/bias"]})
    write_safetensors(tmp_path / "model.safetensors", hf)
    (tmp_path / "config.json").write_text(json.dumps({"encoder_attention_heads": 8}))
    windows = actor_01[0][:2]
    ours = encode_layers(load_whisper_layers(str(tmp_path)), windows)
    assert np.allclose(ours, encode_layers(load_whisper_layers("base"), windows), atol=1e-5)


@pytest.fixture(scope="module")
def sample_layers(tmp_path_factory):
    """Every layer (mean || std) of all 96 clips of the embedded sample: (features, labels, actors)."""
    windows, labels, actors, _ = sample_windows([1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 17, 18], tmp_path_factory.mktemp("all"))
    return encode_layers(load_whisper_layers("base"), windows), labels, actors


@pytest.mark.slow
def test_a_classifier_on_a_middle_layer_learns_emotions_of_unseen_actors(sample_layers):
    """Logistic regression on layer 3 (mean || std) of sample actors 01-08, scored on 13, 14, 17, 18: above chance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels, actors = sample_layers
    train = actors <= 8
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    model.fit(features[train, 3], labels[train])
    accuracy = float((model.predict(features[~train, 3]) == labels[~train]).mean())
    assert accuracy >= 0.3, accuracy  # 32 held-out clips; chance is 0.125


@pytest.mark.slow
def test_the_baseline_grid_search_chooses_layers_on_training_actors_only(sample_layers, tmp_path):
    """baselines.layer_sets: the layers are chosen with C by GroupKFold over the training actors; the refitted
    pipeline keeps only those layers' columns, is saved as a plain scaler + regression over every layer giving the
    same probabilities, survives a round trip through a model directory (arrays, no pickle), and beats chance on
    unseen actors."""
    from avemo.baselines.fit import full_width, grid_search
    from avemo.modelfile import ArrayClassifier, export_estimator, load_bundle, save_bundle
    from avemo.baselines.fit_and_score import layer_sets, readable_params

    features, labels, actors = sample_layers
    flat, train = features.reshape(len(features), -1), actors <= 8
    info = {"whisper_layers": {"config": {"layers": "all"}, "shape": [7, 1024]}}
    layers = layer_sets({"layer_sets": [[3], [6], [2, 3, 4], [9]]}, ["whisper_layers"], info)
    assert layers["keep"] == [(3,), (6,), (2, 3, 4)]  # a layer that was not stored is not a candidate
    search = grid_search(flat[train], labels[train], actors[train], "logreg", {"C": [0.001, 0.01]}, 4,
                         "balanced_accuracy", 0, 1, layers)
    assert search.cv.actors_ == [1, 2, 3, 4, 5, 6, 7, 8]
    chosen = readable_params(search.best_params_, layers)
    assert chosen["layers"] in ([3], [6], [2, 3, 4]) and chosen["C"] in (0.001, 0.01)
    width = search.best_estimator_.named_steps["layers"].transform(flat[:2]).shape[1]
    assert width == 1024 * len(chosen["layers"])
    wide = full_width(search.best_estimator_)  # the saved form: plain scaler + regression over every layer
    assert list(wide.named_steps) == ["scale", "clf"] and wide.named_steps["clf"].coef_.shape[1] == 7 * 1024
    assert np.allclose(wide.predict_proba(flat), search.best_estimator_.predict_proba(flat), atol=1e-6)
    kind, arrays = export_estimator(wide)
    save_bundle(tmp_path / "m", {"kind": kind}, arrays)
    stored = ArrayClassifier(kind, load_bundle(tmp_path / "m")[1])
    np.testing.assert_allclose(stored.predict_proba(flat[~train]), search.best_estimator_.predict_proba(flat[~train]),
                               atol=1e-6)  # scikit-learn computes float32 inputs in float32, the arrays in float64
    accuracy = float((stored.predict_proba(flat[~train]).argmax(1) == labels[~train]).mean())
    assert accuracy >= 0.3, accuracy
    assert layer_sets({"layer_sets": [[3]]}, ["whisper"], info) is None  # other inputs: every column
    with pytest.raises(ParamError, match=r"baselines.layer_sets: none of \[\[9\]\] is among the stored layers"):
        layer_sets({"layer_sets": [[9]]}, ["whisper_layers"], info)
