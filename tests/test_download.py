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
