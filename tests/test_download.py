import functools
import hashlib
import http.server
import shutil
import threading
import zipfile

import pytest

from avemo.download import UnpackResult, fetch_archive, resolve_remote, select_actors, unpack_speech_clips
from avemo.errors import DownloadError, ParamError


@pytest.fixture
def mirror(tmp_path, lite_dir):
    """A mirror of two real ravdess-lite archives; actor 02's copy is corrupted after its md5 was listed."""
    root = tmp_path / "mirror"
    root.mkdir()
    for name in ("Video_Speech_Actor_01.zip", "Video_Speech_Actor_02.zip"):
        shutil.copy(lite_dir / name, root / name)
    sums = [f"{hashlib.md5((root / n).read_bytes()).hexdigest()}  {n}" for n in sorted(p.name for p in root.iterdir())]
    (root / "MD5SUMS").write_text("\n".join(sums) + "\n")
    data = bytearray((root / "Video_Speech_Actor_02.zip").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "Video_Speech_Actor_02.zip").write_bytes(bytes(data))
    return root


@pytest.fixture
def served(mirror):
    """The mirror over http on 127.0.0.1 (the standard library server supports no Range: resume restarts)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_mirror_download_verifies_and_unpacks_real_clips(served, tmp_path):
    remote = resolve_remote("mirror", served, tmp_path / "unused")
    assert select_actors("all", remote) == [1, 2]
    archive = fetch_archive(remote, "Video_Speech_Actor_01.zip", tmp_path / "cache")
    assert archive.parent == tmp_path / "cache" and not list(archive.parent.glob("*.part"))
    result = UnpackResult()
    unpack_speech_clips(archive, tmp_path / "clips", result)
    assert len(result.clips) == 60 and not result.skipped
    assert sorted(p.stem for p in (tmp_path / "clips").glob("*.mp4")) == sorted(result.clips)


def test_corrupted_download_is_refetched_then_rejected_naming_the_file(served, tmp_path, capsys):
    remote = resolve_remote("mirror", served, tmp_path / "unused")
    with pytest.raises(DownloadError, match=r"Video_Speech_Actor_02\.zip: md5 mismatch after a refetch"):
        fetch_archive(remote, "Video_Speech_Actor_02.zip", tmp_path / "cache")
    assert "fetching again" in capsys.readouterr().out
    assert not list((tmp_path / "cache").iterdir())  # nothing corrupt left for a rerun to trust


def test_stale_partial_download_is_completed(served, mirror, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "Video_Speech_Actor_01.zip.part").write_bytes(b"garbage from an interrupted run")
    remote = resolve_remote("mirror", served, tmp_path / "unused")
    archive = fetch_archive(remote, "Video_Speech_Actor_01.zip", cache)
    assert archive.read_bytes() == (mirror / "Video_Speech_Actor_01.zip").read_bytes()


def test_local_mirror_with_corrupt_copy_fails_clearly(mirror, tmp_path):
    remote = resolve_remote("mirror", str(mirror), tmp_path)
    assert fetch_archive(remote, "Video_Speech_Actor_01.zip", tmp_path) == mirror / "Video_Speech_Actor_01.zip"
    with pytest.raises(DownloadError, match=r"Video_Speech_Actor_02\.zip: md5 mismatch"):
        fetch_archive(remote, "Video_Speech_Actor_02.zip", tmp_path)


def test_actor_selection_is_validated(mirror, tmp_path):
    remote = resolve_remote("mirror", str(mirror), tmp_path)
    assert select_actors([2], remote) == [2]
    with pytest.raises(ParamError, match=r"actors \[5\] are not offered"):
        select_actors([2, 5], remote)
    with pytest.raises(ParamError, match="choose one of: sample, zenodo, mirror"):
        resolve_remote("dropbox", None, tmp_path)


def test_truncated_archive_is_an_error_naming_it(sample_zip, tmp_path):
    sample_zip.write_bytes(sample_zip.read_bytes()[:200_000])
    with pytest.raises(DownloadError, match="Video_Speech_Actor_01.zip"):
        unpack_speech_clips(sample_zip, tmp_path / "clips", UnpackResult())
    assert not list(tmp_path.rglob("*.mp4"))


def test_foreign_and_video_only_members_are_reported_not_unpacked(sample_zip, tmp_path):
    with zipfile.ZipFile(sample_zip, "a") as zipped:
        zipped.writestr("Actor_01/holiday.mp4", b"not ravdess")
        zipped.writestr("Actor_01/02-01-03-01-01-01-01.mp4", b"video-only copy")
    result = UnpackResult()
    unpack_speech_clips(sample_zip, tmp_path / "clips", result)
    assert len(result.clips) == 8 and result.video_only_copies == 1
    assert result.skipped[0]["file"].endswith("holiday.mp4") and "not a RAVDESS name" in result.skipped[0]["reason"]


def first_clip(archive) -> zipfile.ZipInfo:
    with zipfile.ZipFile(archive) as zipped:
        return next(m for m in zipped.infolist() if m.filename.endswith(".mp4"))


def test_two_members_with_one_clip_id_stop_the_archive_naming_both(sample_zip, tmp_path):
    """A 22-byte non-video member under a real clip's id (another folder): one error naming the archive and
    both members, and not one clip written."""
    real = first_clip(sample_zip).filename
    stray = f"extra/{real.rsplit('/', 1)[-1]}"
    with zipfile.ZipFile(sample_zip, "a") as zipped:
        zipped.writestr(stray, b"twenty-two bytes only.")
    with pytest.raises(DownloadError) as raised:
        unpack_speech_clips(sample_zip, tmp_path / "clips", UnpackResult())
    message = str(raised.value)
    assert "\n" not in message and str(sample_zip) in message
    assert f"Video_Speech_Actor_01.zip:{real}" in message and f"Video_Speech_Actor_01.zip:{stray}" in message
    assert not list(tmp_path.rglob("*.mp4"))


def test_a_clip_id_already_unpacked_from_another_archive_is_not_overwritten(sample_zip, tmp_path):
    clips, result = tmp_path / "clips", UnpackResult()
    unpack_speech_clips(sample_zip, clips, result)
    real = first_clip(sample_zip).filename
    unpacked = clips / real.rsplit("/", 1)[-1]
    before = unpacked.read_bytes()
    other = tmp_path / "Video_Speech_Actor_02.zip"
    with zipfile.ZipFile(other, "w") as zipped:
        zipped.writestr(real.rsplit("/", 1)[-1], b"twenty-two bytes only.")
    with pytest.raises(DownloadError, match=rf"Video_Speech_Actor_01\.zip:{real}' and "
                                            rf"'Video_Speech_Actor_02\.zip:{unpacked.name}' are both clip"):
        unpack_speech_clips(other, clips, result)
    assert unpacked.read_bytes() == before and len(result.clips) == 8


def test_download_stage_with_a_duplicate_clip_id_fails_in_one_line_and_keeps_its_output(tmp_path):
    """The real stage script: exit 1, one error line naming the archive and both members; data/raw as before."""
    from conftest import ROOT, run_script

    project = tmp_path / "project"
    sample = project / "sample"
    sample.mkdir(parents=True)
    archive = sample / "Video_Speech_Actor_01.zip"
    shutil.copy(ROOT / "data/sample" / archive.name, archive)
    (project / "params.yaml").write_text("data: {source: sample, mirror: '', actors: all}\n")

    def md5sums():
        (sample / "MD5SUMS").write_text(f"{hashlib.md5(archive.read_bytes()).hexdigest()}  {archive.name}\n")

    md5sums()
    args = ("--sample-dir", sample, "--archives", project / "archives", "--out", project / "raw")
    run_script(project, ROOT / "stages/download.py", *args)
    before = {p: p.read_bytes() for p in (project / "raw").rglob("*") if p.is_file()}
    real = first_clip(archive).filename
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr("extra/" + real.rsplit("/", 1)[-1], b"twenty-two bytes only.")
    md5sums()
    done = run_script(project, ROOT / "stages/download.py", *args, check=False)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and archive.name in errors[0], done.stderr
    assert real in errors[0] and "extra/" in errors[0]
    assert {p: p.read_bytes() for p in (project / "raw").rglob("*") if p.is_file()} == before
