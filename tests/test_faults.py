"""Faults and bad inputs through the real stage scripts, run as subprocesses on real files.

Every failure must end with exit code 1 and one `error:` line naming the file (never a traceback);
every bad clip must be reported by name in report.json; no fault may lose or half-write a finished
result (outputs are written to `.tmp-*` and renamed; reruns remove those leftovers)."""
import hashlib
import json
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import pytest
import yaml

from conftest import ROOT, venv_env

from avemo.download import UnpackResult, unpack_speech_clips
from avemo.metadata import write_metadata

FAST_FACES = {"n_frames": 4, "crop_px": 48, "workers": 2}


# ---------------------------------------------------------------- helpers


def make_project(where: Path, **sections) -> Path:
    """A working directory with the repository's params.yaml, `sections` merged in (stages read ./params.yaml)."""
    where.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, values in sections.items():
        params[name] = {**params.get(name, {}), **values}
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return where


def stage(cwd: Path, name: str, *args, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    # No bytecode written by the child: under a file size limit (limit_file_size) CPython would leave a
    # truncated .pyc in the repository's __pycache__ (its raw write is not checked), and every later
    # process would fail with "marshal data too short".
    popen.setdefault("env", venv_env(PYTHONDONTWRITEBYTECODE=1))
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{name}.py"), *map(str, args)], cwd=cwd,
                          text=True, capture_output=True, timeout=timeout, **popen)


def succeeded(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def failed_cleanly(done: subprocess.CompletedProcess, *named: str) -> str:
    """Exit 1 with an `error:` line naming every string of `named`, and no traceback."""
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    for text in named:
        assert text in errors[0], (text, errors[0])
    return errors[0]


def make_raw(raw: Path, clips: list[Path]) -> Path:
    """The layout of the download stage's output: clips/ and metadata.csv."""
    (raw / "clips").mkdir(parents=True)
    for clip in clips:
        shutil.copy(clip, raw / "clips" / clip.name)
    write_metadata(raw / "clips", raw / "metadata.csv")
    return raw


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, by relative path."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".tmp-*"))


def write_md5sums(folder: Path) -> None:
    lines = [f"{hashlib.md5(z.read_bytes()).hexdigest()}  {z.name}" for z in sorted(folder.glob("*.zip"))]
    (folder / "MD5SUMS").write_text("\n".join(lines) + "\n")


def limit_file_size(limit: int):
    """preexec_fn: every file the child writes is capped at `limit` bytes, as on a full disk. Writes past it
    fail with EFBIG instead of killing the process with SIGXFSZ. Portable (no root, no tmpfs)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lite_clips(tmp_path_factory, lite_dir) -> list[Path]:
    """The 60 real ravdess-lite clips of actor 01, unpacked once."""
    where = tmp_path_factory.mktemp("lite") / "clips"
    result = UnpackResult()
    unpack_speech_clips(lite_dir / "Video_Speech_Actor_01.zip", where, result)
    return sorted(where.glob("*.mp4"))


@pytest.fixture
def sample_source(tmp_path) -> Path:
    """A `data/sample`-like folder: two real embedded-sample archives (8 clips each) and their MD5SUMS."""
    folder = tmp_path / "sample"
    folder.mkdir()
    for actor in ("01", "02"):
        shutil.copy(ROOT / "data" / "sample" / f"Video_Speech_Actor_{actor}.zip", folder)
    write_md5sums(folder)
    return folder


def download(project: Path, source: Path, **popen) -> subprocess.CompletedProcess:
    return stage(project, "download", "--sample-dir", source, "--archives", project / "archives",
                 "--out", project / "data" / "raw", **popen)


@pytest.fixture
def downloaded(tmp_path, sample_source) -> tuple[Path, dict]:
    """A project whose download stage has finished once; returns it and a snapshot of data/raw."""
    project = make_project(tmp_path / "project", data={"source": "sample", "actors": "all"})
    assert "16 audio+video speech clips" in succeeded(download(project, sample_source))
    return project, snapshot(project / "data" / "raw")


# ---------------------------------------------------------------- archives


def test_truncated_zip_fails_naming_it_and_keeps_the_earlier_result(downloaded, sample_source):
    project, before = downloaded
    archive = sample_source / "Video_Speech_Actor_02.zip"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    write_md5sums(sample_source)  # the md5 matches: the mirror itself holds a truncated archive
    failed_cleanly(download(project, sample_source), "Video_Speech_Actor_02.zip")
    assert snapshot(project / "data" / "raw") == before
    assert not leftovers(project / "data")


def test_md5_mismatch_fails_naming_the_archive(downloaded, sample_source):
    project, before = downloaded
    archive = sample_source / "Video_Speech_Actor_01.zip"
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF
    archive.write_bytes(bytes(data))
    error = failed_cleanly(download(project, sample_source), "Video_Speech_Actor_01.zip", "md5 mismatch")
    assert hashlib.md5(bytes(data)).hexdigest() in error
    assert snapshot(project / "data" / "raw") == before


def test_non_ravdess_file_names_in_an_archive_are_reported_as_skipped(tmp_path, sample_source):
    with zipfile.ZipFile(sample_source / "Video_Speech_Actor_01.zip", "a") as zipped:
        zipped.writestr("Actor_01/holiday.mp4", b"not a RAVDESS clip")
        zipped.writestr("Actor_01/01-01-09-01-01-01-01.mp4", b"emotion 09 does not exist")
    write_md5sums(sample_source)
    project = make_project(tmp_path / "project", data={"source": "sample", "actors": "all"})
    out = succeeded(download(project, sample_source))
    report = json.loads((project / "data/raw/report.json").read_text())
    assert report["clips"] == 16
    skipped = {entry["file"]: entry["reason"] for entry in report["skipped"]}
    assert "not a RAVDESS name" in skipped["Video_Speech_Actor_01.zip:Actor_01/holiday.mp4"]
    assert "emotion 09 is outside the RAVDESS scheme" in \
        skipped["Video_Speech_Actor_01.zip:Actor_01/01-01-09-01-01-01-01.mp4"]
    assert "holiday.mp4" in out and "2 files skipped" in out
    unpacked = sorted(p.name for p in (project / "data/raw/clips").iterdir())
    assert len(unpacked) == 16 and "holiday.mp4" not in unpacked and "01-01-09-01-01-01-01.mp4" not in unpacked
    assert len((project / "data/raw/metadata.csv").read_text().splitlines()) == 17


# ---------------------------------------------------------------- bad clips


@pytest.fixture(scope="module")
def bad_clips(tmp_path_factory, lite_clips, ffmpeg) -> dict:
    """A raw folder of 3 good real clips and 5 bad ones made from real clips (each keeps a RAVDESS name),
    then extract_audio and faces run on it with a cache."""
    work = tmp_path_factory.mktemp("bad")
    made = work / "made"
    made.mkdir()
    good, (header_cut, data_cut, no_audio, silent, no_face) = lite_clips[:3], lite_clips[3:8]
    bad = {"header_cut": made / header_cut.name, "data_cut": made / data_cut.name,
           "no_audio": made / no_audio.name, "silent": made / silent.name, "no_face": made / no_face.name}
    bad["header_cut"].write_bytes(header_cut.read_bytes()[:3000])  # the header (moov) itself is cut
    bad["data_cut"].write_bytes(data_cut.read_bytes()[: data_cut.stat().st_size // 2])  # half the media data
    ffmpeg("-i", no_audio, "-map", "0:v", "-c", "copy", bad["no_audio"])
    ffmpeg("-i", silent, "-c:v", "copy", "-af", "volume=0", "-c:a", "aac", bad["silent"])
    ffmpeg("-i", no_face, "-vf", "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill", "-pix_fmt", "yuv420p",
           "-c:a", "copy", bad["no_face"])
    project = make_project(work / "project", faces=FAST_FACES)
    raw = make_raw(project / "raw", good + list(bad.values()))
    runs = {name: stage(project, name, "--raw", raw, "--out", project / name, "--cache", project / "cache")
            for name in ("extract_audio", "faces")}
    reports = {name: json.loads((project / name / "report.json").read_text()) for name in runs if
               runs[name].returncode == 0}
    return {"project": project, "raw": raw, "good": good, "bad": bad, "runs": runs, "reports": reports}


@pytest.mark.slow  # the bad_clips fixture runs both stages on 8 clips (~25 s)
def test_bad_clips_do_not_stop_the_stages(bad_clips):
    for name, done in bad_clips["runs"].items():
        succeeded(done)
    audio, faces = bad_clips["reports"]["extract_audio"], bad_clips["reports"]["faces"]
    assert audio["counts"] == {"ok": 5, "failed": 1, "no_audio": 1, "silent": 1}
    assert faces["clips"] == 7 and len(faces["skipped"]) == 1
    wavs = sorted(p.stem for p in (bad_clips["project"] / "extract_audio/wav").glob("*.wav"))
    kept = [c.stem for c in bad_clips["good"]] + [bad_clips["bad"][k].stem for k in ("data_cut", "no_face")]
    assert wavs == sorted(kept)


@pytest.mark.slow  # the bad_clips fixture runs both stages on 8 clips (~25 s)
def test_truncated_mp4_is_reported_by_name_in_both_stages(bad_clips):
    header_cut, data_cut = bad_clips["bad"]["header_cut"], bad_clips["bad"]["data_cut"]
    audio, faces = bad_clips["reports"]["extract_audio"], bad_clips["reports"]["faces"]
    failed = [s for s in audio["skipped"] if s["status"] == "failed"]
    assert len(failed) == 1 and header_cut.name in failed[0]["message"]
    assert "ffmpeg cannot decode it" in failed[0]["message"]
    assert faces["skipped"][0]["clip"] == header_cut.stem and header_cut.name in faces["skipped"][0]["message"]
    for report in (audio, faces):  # half a file decodes: kept, but flagged as truncated
        assert len(report["partial"]) == 1 and data_cut.name in report["partial"][0]
        assert "truncated" in report["partial"][0]
    for done in bad_clips["runs"].values():
        assert header_cut.name in done.stdout and data_cut.name in done.stdout  # warnings name them


@pytest.mark.slow  # the bad_clips fixture runs both stages on 8 clips (~25 s)
def test_clip_without_audio_stream_is_reported(bad_clips):
    clip = bad_clips["bad"]["no_audio"]
    entry = next(s for s in bad_clips["reports"]["extract_audio"]["skipped"] if s["clip"] == clip.stem)
    assert entry["status"] == "no_audio" and entry["message"].endswith(f"{clip.name}: has no audio stream")
    assert clip.stem in bad_clips["reports"]["faces"]["detection_rate"]  # the video part is still used


@pytest.mark.slow  # the bad_clips fixture runs both stages on 8 clips (~25 s)
def test_silent_clip_is_reported(bad_clips):
    clip = bad_clips["bad"]["silent"]
    entry = next(s for s in bad_clips["reports"]["extract_audio"]["skipped"] if s["clip"] == clip.stem)
    assert entry["status"] == "silent" and entry["rms_dbfs"] < -60 and clip.name in entry["message"]
    assert not (bad_clips["project"] / "extract_audio/wav" / f"{clip.stem}.wav").exists()


@pytest.mark.slow  # the bad_clips fixture runs both stages on 8 clips (~25 s)
def test_video_without_a_detectable_face_is_reported(bad_clips):
    clip = bad_clips["bad"]["no_face"]
    faces = bad_clips["reports"]["faces"]
    assert faces["detection_rate"][clip.stem] == 0.0
    assert faces["no_face"] == [f"{bad_clips['raw'] / 'clips' / clip.name}: no face found in any sampled frame; "
                                "centre crops used"]
    strip = cv2.imread(str(bad_clips["project"] / "faces/strips" / f"{clip.stem}.jpg"))
    assert strip.shape == (48, 4 * 48, 3) and strip.mean() < 10  # centre crops of the black frames
    assert all(faces["detection_rate"][c.stem] > 0.5 for c in bad_clips["good"])


@pytest.mark.slow
def test_cache_gives_the_same_output_recomputes_failures_and_rejects_damaged_entries(bad_clips):
    project, raw = bad_clips["project"], bad_clips["raw"]
    first = {name: snapshot(project / name) for name in ("extract_audio", "faces")}
    entries = sorted(p for p in (project / "cache/faces").iterdir() if not p.name.startswith("."))
    assert len(entries) == 7  # every clip but the unreadable one
    strip_entry, manifest_entry = entries[0], entries[1]
    payload = strip_entry / "strip.jpg"
    payload.write_bytes(payload.read_bytes()[:-10] + b"0123456789")  # damaged payload
    (manifest_entry / "manifest.json").write_text("{ not json")  # damaged manifest
    for name in ("extract_audio", "faces"):
        out = succeeded(stage(project, name, "--raw", raw, "--out", project / name, "--cache", project / "cache"))
        report = json.loads((project / name / "report.json").read_text())
        drop = lambda snap: {k: v for k, v in snap.items() if k != "report.json"}  # noqa: E731
        assert drop(snapshot(project / name)) == drop(first[name])  # byte-identical wavs, strips, tracks
        expected = {"hits": 7, "misses": 1, "rejected": 0} if name == "extract_audio" else \
            {"hits": 5, "misses": 3, "rejected": 2}  # the failed clip is never cached: recomputed each run
        counts = json.loads((project / "cache" / f"{name}.last_run.json").read_text())
        assert "cache" not in report  # run-dependent counts stay out of the DVC output
        assert {k: counts[k] for k in expected} == expected, counts
        assert "hits" in out.splitlines()[-1]
    assert "cache entry rejected" in out


# ---------------------------------------------------------------- parameters


def test_broken_params_yaml_is_named_without_traceback(tmp_path, sample_source):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("faces:\n  n_frames: [16\n  crop_px: 112\n")
    for name, args in {"faces": ["--raw", project / "raw", "--out", project / "faces"],
                       "extract_audio": ["--raw", project / "raw", "--out", project / "audio"],
                       "download": ["--sample-dir", sample_source, "--archives", project / "a", "--out", project / "r"]
                       }.items():
        failed_cleanly(stage(project, name, *args), "params.yaml: not valid YAML")


@pytest.mark.parametrize("section, values, stage_name, message", [
    ("data", {"source": "dropbox"}, "download",
     "data.source: 'dropbox' is not valid; choose one of: sample, zenodo, mirror"),
    ("data", {"actors": "some"}, "download", "data.actors: 'some' is not valid; give 'all' or a list"),
    ("faces", {"scale_factor": 0.9}, "faces", "faces.scale_factor: 0.9 is not valid; give a pyramid step above 1"),
    ("faces", {"n_frames": "sixteen"}, "faces", "faces.n_frames: 'sixteen' is not valid"),
    ("audio", {"sample_rate": "16k"}, "extract_audio", "audio.sample_rate: '16k' is not valid; give a positive whole"),
])
def test_bad_parameter_value_names_the_key_and_the_valid_choices(tmp_path, sample_source, lite_clips,
                                                                 section, values, stage_name, message):
    project = make_project(tmp_path / "project", **{section: values})
    raw = make_raw(project / "raw", lite_clips[:1])
    args = ["--sample-dir", sample_source, "--archives", project / "a", "--out", project / "r"] \
        if stage_name == "download" else ["--raw", raw, "--out", project / "out"]
    failed_cleanly(stage(project, stage_name, *args), message)
    assert not (project / "out").exists() and not (project / "r").exists()


def test_missing_parameter_is_named(tmp_path, lite_clips):
    project = make_project(tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    del params["faces"]["crop_px"]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    raw = make_raw(project / "raw", lite_clips[:1])
    failed_cleanly(stage(project, "faces", "--raw", raw, "--out", project / "out"), "faces.crop_px: missing")


def test_missing_input_is_named(tmp_path):
    project = make_project(tmp_path / "project")
    failed_cleanly(stage(project, "faces", "--raw", project / "nowhere", "--out", project / "out"),
                   str(project / "nowhere" / "metadata.csv"), "No such file")


# ---------------------------------------------------------------- interruption


@pytest.mark.slow
def test_stage_killed_midway_leaves_no_half_output_and_the_rerun_cleans_up(tmp_path, lite_clips):
    project = make_project(tmp_path / "project", faces=FAST_FACES)
    raw = make_raw(project / "raw", lite_clips[:30])
    out, cache = project / "data" / "faces", project / "cache"
    succeeded(stage(project, "faces", "--raw", raw, "--out", out))  # a finished earlier result
    before = snapshot(out)

    child = subprocess.Popen([sys.executable, str(ROOT / "stages/faces.py"), "--raw", str(raw), "--out", str(out),
                              "--cache", str(cache)], cwd=project, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    done_entries = lambda: [e for e in (cache / "faces").glob("*") if not e.name.startswith(".")]  # noqa: E731
    while child.poll() is None and time.monotonic() < deadline and \
            not (leftovers(out.parent) and (cache / "faces").is_dir() and len(done_entries()) >= 3):
        time.sleep(0.02)  # until it is writing its `.tmp-faces-*` folder and has finished 3 clips (~1-2 s)
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL, "the stage finished before it could be killed: give it more clips"

    assert snapshot(out) == before  # the finished result is untouched, nothing half-written in it
    assert [name for name in leftovers(out.parent) if name.startswith(".tmp-faces-")]
    for entry in (cache / "faces").iterdir():  # only complete entries carry a final name
        assert entry.name.startswith(".tmp-") or (entry / "manifest.json").exists()

    rerun = succeeded(stage(project, "faces", "--raw", raw, "--out", out, "--cache", cache))
    assert "removed" in rerun and "leftover" in rerun
    assert not leftovers(out.parent) and not leftovers(cache / "faces")
    report = json.loads((out / "report.json").read_text())
    counts = json.loads((cache / "faces.last_run.json").read_text())
    assert report["clips"] == 30 and counts["hits"] + counts["misses"] == 30
    assert counts["hits"] >= 3  # what the killed run had finished is reused
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "report.json"} == \
        {k: v for k, v in before.items() if k != "report.json"}  # cached clips are byte-identical


# ---------------------------------------------------------------- full disk


@pytest.mark.parametrize("name, output_file", [pytest.param("faces", ".jpg", marks=pytest.mark.slow),
                                                ("extract_audio", ".wav")])
def test_full_disk_fails_naming_the_file_and_keeps_the_finished_result(tmp_path, lite_clips, name, output_file):
    project = make_project(tmp_path / "project", faces=FAST_FACES)
    raw = make_raw(project / "raw", lite_clips[:6])
    out = project / "data" / name
    succeeded(stage(project, name, "--raw", raw, "--out", out, "--cache", project / "cache"))
    before = snapshot(out)
    shutil.rmtree(project / "cache")  # the clips must really be written again
    done = stage(project, name, "--raw", raw, "--out", out, "--cache", project / "cache",
                 preexec_fn=limit_file_size(2000))  # every strip and wav is larger than 2 kB
    error = failed_cleanly(done, "cannot write", output_file, f"{out} left as it was")
    assert "File too large" in error or "System error" in error, error
    assert snapshot(out) == before
    assert not leftovers(out.parent)
    for entry in (project / "cache" / name).iterdir():  # nothing half-written is kept in the cache either
        assert not entry.name.startswith(".tmp-") and (entry / "manifest.json").exists()


@pytest.mark.slow
def test_full_disk_during_encoding_fails_naming_the_file_and_keeps_the_finished_result(tmp_path, lite_clips):
    """The encode stage writes per-clip arrays, then features.npz: a write that fails (file size limit, as on a
    full disk) ends in one line naming the file, and the finished features stay as they were."""
    project = make_project(tmp_path / "project", faces=FAST_FACES)
    raw = make_raw(project / "raw", lite_clips[:4])
    succeeded(stage(project, "faces", "--raw", raw, "--out", project / "faces"))
    out = project / "data" / "features" / "fer"
    succeeded(stage(project, "encode", "--input", "fer", "--source", project / "faces", "--out", out))
    before = snapshot(out)
    done = stage(project, "encode", "--input", "fer", "--source", project / "faces", "--out", out,
                 preexec_fn=limit_file_size(2000))  # a clip's 4 x 135 values fit, the features.npz of 4 do not
    error = failed_cleanly(done, "cannot write", "File too large", f"{out} left as it was")
    assert "features.npz" in error, error
    assert snapshot(out) == before
    assert not leftovers(out.parent)


def test_full_disk_during_download_fails_cleanly_and_keeps_the_finished_result(downloaded, sample_source):
    project, before = downloaded
    done = download(project, sample_source, preexec_fn=limit_file_size(20_000))  # clips are ~70-130 kB
    failed_cleanly(done, "File too large")
    assert "cannot write" in done.stderr and "corrupt" not in done.stderr  # a write failure, not a bad archive
    assert snapshot(project / "data" / "raw") == before
    assert not leftovers(project / "data")


# ---------------------------------------------------------------- cache keys


def test_cache_key_follows_content_and_parameters_not_names(tmp_path, lite_clips):
    from avemo.cache import ClipCache

    def cache(**params):
        return ClipCache(tmp_path / "cache", "demo", params, code=[ROOT / "avemo" / "cache.py"])

    clip, renamed = lite_clips[0], tmp_path / "01-01-08-02-02-02-24.mp4"
    shutil.copy(clip, renamed)
    out = tmp_path / "out.bin"
    def compute(text):
        def work():
            out.write_text(text)
            return {"status": "ok", "note": f"{clip}: {text}"}
        return work
    first = cache(size=48).through(clip, {"out.bin": out}, compute("computed"))
    again = cache(size=48)
    assert again.through(renamed, {"out.bin": out}, compute("recomputed")) == \
        {"status": "ok", "note": f"{renamed}: computed"}  # same bytes: a hit, the path rebased to the new file
    assert again.summary()["hits"] == 1 and out.read_text() == "computed"
    other = cache(size=64)  # another output-relevant parameter: a miss
    assert other.through(clip, {"out.bin": out}, compute("size 64"))["note"].endswith("size 64")
    assert other.summary()["misses"] == 1
    changed = tmp_path / "changed.mp4"
    data = bytearray(clip.read_bytes())
    data[-1] ^= 0xFF
    changed.write_bytes(bytes(data))  # one byte differs: a miss
    assert cache(size=48).through(changed, {"out.bin": out}, compute("changed"))["note"].endswith("changed")
    assert first["note"].endswith("computed")
