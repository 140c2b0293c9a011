"""The encode stages (stages/encode.py) on real clips: reruns give byte-identical outputs, with or without the
per-clip cache, so DVC sees the same output hash; info.json records what made the features."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avemo.io import read_json

pytestmark = pytest.mark.slow

CLIPS = 6


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sources(sample_data, tmp_path_factory) -> dict:
    """The first 6 clips of the sample's extract_audio and faces outputs, in the layout of those stages."""
    where = tmp_path_factory.mktemp("encode-sources")
    audio, faces = where / "audio", where / "faces"
    (audio / "wav").mkdir(parents=True)
    (faces / "strips").mkdir(parents=True)
    tracks = read_json(sample_data.faces / "tracks.json")
    clips = sorted(tracks)[:CLIPS]
    for clip in clips:
        shutil.copy(sample_data.audio / "wav" / f"{clip}.wav", audio / "wav")
        shutil.copy(sample_data.faces / "strips" / f"{clip}.jpg", faces / "strips")
    (faces / "tracks.json").write_text(json.dumps({c: tracks[c] for c in clips}))
    shutil.copy(sample_data.faces / "report.json", faces / "report.json")
    return {"audio": audio, "faces": faces, "clips": clips}


@pytest.mark.parametrize("name, source, shape", [("whisper", "audio", [50, 512]), ("fer", "faces", [4, 135]),
                                                 ("egemaps", "audio", [88]), ("imagenet", "faces", [4, 1280])])
def test_reruns_give_byte_identical_features_with_and_without_the_cache(sample_data, sources, tmp_path, name,
                                                                       source, shape):
    runs = {}
    for run, cache in (("first", None), ("second", None), ("cold cache", "cache"), ("warm cache", "cache")):
        out = tmp_path / run.replace(" ", "-") / name
        args = ["--input", name, "--source", sources[source], "--out", out]
        if cache:
            args += ["--cache", tmp_path / cache]
        done = sample_data.run("stages/encode.py", *args)
        runs[run] = out
        assert f"encode {name}: {CLIPS} clips" in done.stdout
    first = runs["first"]
    for run, out in runs.items():
        assert sorted(p.name for p in out.iterdir()) == ["features.npz", "info.json"], run
        assert digest(out / "features.npz") == digest(first / "features.npz"), run
        assert digest(out / "info.json") == digest(first / "info.json"), run
    counts = read_json(tmp_path / "cache" / f"encode_{name}.last_run.json")
    assert (counts["hits"], counts["misses"]) == (CLIPS, 0)  # the warm run computed nothing
    info = read_json(first / "info.json")
    assert info["input"] == name and info["clips"] == CLIPS and info["shape"] == shape and info["skipped"] == []
    assert info["modality"] == ("video" if source == "faces" else "audio")
    assert info["config"] == sample_data.params()["features"][info["modality"]][name]
    if source == "faces":
        assert info["faces"] == read_json(sources["faces"] / "report.json")["config"] and info["window"] == {}
    else:
        assert info["window"] == {"sample_rate": 16000, "offset_s": 0.5, "duration_s": 3.0}
    with np.load(first / "features.npz") as arrays:
        assert list(arrays["clips"]) == sources["clips"] and arrays["values"].dtype == np.float16
        assert arrays["values"].shape == (CLIPS, *shape)


def test_the_stage_names_a_missing_encoder_setting_and_an_empty_source(sample_data, tmp_path):
    empty = tmp_path / "audio"
    (empty / "wav").mkdir(parents=True)
    done = sample_data.run("stages/encode.py", "--input", "logmel", "--source", empty, "--out", tmp_path / "out",
                           check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith(f"error: {empty}: no clips to encode (run the extract_audio stage)")
    done = sample_data.run("stages/encode.py", "--input", "vggish", "--source", empty, "--out", tmp_path / "out",
                           check=False)
    from avemo.encoders.registry import specs
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith(f"error: encoder 'vggish' unknown; choose one of: {', '.join(specs())}")
    assert not (tmp_path / "out").exists()
