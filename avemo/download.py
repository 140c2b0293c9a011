"""Fetch RAVDESS audio+video speech archives (zenodo, a mirror directory or an http mirror),
verify their md5, and unpack the audio+video speech clips with a metadata table."""
from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .ids import N_ACTORS, parse_clip_id
from .errors import BadClipName, DownloadError, ParamError
from .io import atomic_path, write_error

ZENODO_RECORD_API = "https://zenodo.org/api/records/1188976"
ARCHIVE = "Video_Speech_Actor_{:02d}.zip"
CHUNK = 1 << 20


@dataclass
class Remote:
    """Where archives come from: `location` is a local directory or an http(s) base URL."""
    location: str
    md5: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return not self.location.startswith(("http://", "https://"))

    def url(self, name: str) -> str:
        return self.urls.get(name) or f"{self.location.rstrip('/')}/{name}"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_md5sums(text: str, origin: str) -> dict[str, str]:
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 32:
            raise DownloadError(f"{origin}: line {number} is not '<md5>  <file>': {line!r}")
        sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _read_url(url: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def resolve_remote(source: str, mirror: str | None, sample_dir: str | Path) -> Remote:
    """Turn `data.source` (sample | zenodo | mirror) and `data.mirror` into a Remote with md5 sums."""
    if source == "sample":
        return _mirror_remote(str(sample_dir))
    if source == "mirror":
        if not mirror:
            raise ParamError("data.mirror: empty; give a directory or an http(s) URL holding "
                             "Video_Speech_Actor_XX.zip and MD5SUMS")
        return _mirror_remote(str(mirror))
    if source == "zenodo":
        return _zenodo_remote()
    raise ParamError(f"data.source: '{source}' is not valid; choose one of: sample, zenodo, mirror")


def _mirror_remote(location: str) -> Remote:
    remote = Remote(location, {})
    sums_at = remote.url("MD5SUMS")
    try:
        text = Path(sums_at).read_text() if remote.is_local else _read_url(sums_at).decode()
    except (OSError, urllib.error.URLError) as err:
        raise DownloadError(f"{sums_at}: cannot read the mirror's MD5SUMS ({err})") from None
    remote.md5 = parse_md5sums(text, sums_at)
    return remote


def _zenodo_remote() -> Remote:
    try:
        record = json.loads(_read_url(ZENODO_RECORD_API))
    except (OSError, urllib.error.URLError, ValueError) as err:
        raise DownloadError(f"{ZENODO_RECORD_API}: cannot read the zenodo record ({err}); "
                            "without network use data.source: mirror or sample") from None
    remote = Remote(ZENODO_RECORD_API, {})
    for entry in record.get("files", []):
        name = entry.get("key") or entry.get("filename")
        algo, _, digest = entry.get("checksum", "").partition(":")
        if name and algo == "md5":
            remote.md5[name] = digest
            links = entry.get("links", {})
            remote.urls[name] = links.get("self") or links.get("download") or ""
    return remote


def available_actors(remote: Remote) -> list[int]:
    actors = [a for a in range(1, N_ACTORS + 1) if ARCHIVE.format(a) in remote.md5]
    if not actors:
        raise DownloadError(f"{remote.location}: lists no Video_Speech_Actor_XX.zip")
    return actors


def select_actors(requested, remote: Remote) -> list[int]:
    present = available_actors(remote)
    if requested in ("all", None):
        return present
    if not isinstance(requested, list) or not all(isinstance(a, int) for a in requested):
        raise ParamError(f"data.actors: '{requested}' is not valid; give 'all' or a list of actor numbers 1-24")
    missing = sorted(set(requested) - set(present))
    if missing:
        raise ParamError(f"data.actors: actors {missing} are not offered by {remote.location} "
                         f"(it has {present})")
    return sorted(set(requested))


def _download(url: str, dest: Path, retries: int = 3) -> None:
    """HTTP download with a progress bar, resume from a `.part` file, and retries."""
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        done = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                if done and response.status != 206:  # server ignored the range: start over
                    done = 0
                total = done + int(response.headers.get("Content-Length") or 0)
                with open(part, "ab" if done else "wb") as out, tqdm(
                        total=total or None, initial=done, unit="B", unit_scale=True,
                        desc=dest.name, leave=False) as bar:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
            part.replace(dest)
            return
        except urllib.error.HTTPError as err:
            if err.code == 416:  # range past the end: the .part is complete or bad; restart clean
                part.unlink(missing_ok=True)
            last = err
        except (OSError, urllib.error.URLError) as err:
            last = err
        if attempt < retries:
            time.sleep(min(2 ** attempt, 30))
    raise DownloadError(f"{url}: download failed after {retries} tries ({last})")


def fetch_archive(remote: Remote, name: str, cache: Path) -> Path:
    """Return a verified local copy of archive `name`; refetch once on an md5 mismatch."""
    expected = remote.md5[name]
    if remote.is_local:
        path = Path(remote.location) / name
        if not path.exists():
            raise DownloadError(f"{path}: listed in MD5SUMS but missing")
        got = md5_of(path)
        if got != expected:
            raise DownloadError(f"{path}: md5 mismatch (expected {expected}, got {got}); "
                                "the mirror's copy is corrupt or truncated")
        return path
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / name
    for attempt in (1, 2):
        if not path.exists():
            _download(remote.url(name), path)
        got = md5_of(path)
        if got == expected:
            return path
        path.unlink()
        if attempt == 2:
            raise DownloadError(f"{remote.url(name)}: md5 mismatch after a refetch "
                                f"(expected {expected}, got {got}); the file was removed")
        print(f"{name}: md5 mismatch (expected {expected}, got {got}); fetching again")
    raise AssertionError("unreachable")


@dataclass
class UnpackResult:
    clips: list[str] = field(default_factory=list)
    video_only_copies: int = 0
    skipped: list[dict] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # clip id -> 'archive:member' it was unpacked from


def unpack_speech_clips(archive: Path, clips_dir: Path, result: UnpackResult) -> None:
    """Extract the audio+video speech clips (`01-01-*.mp4`) of one archive into `clips_dir`. Two members with
    one clip id (in this archive, or one already unpacked from another) stop it before anything is written."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            clips = _speech_members(zipped, archive, result)
            for stem, member in clips.items():
                _extract(zipped, member, archive, clips_dir / f"{stem}.mp4")
                result.clips.append(stem)
                result.origin[stem] = f"{archive.name}:{member.filename}"
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{archive}: not a readable zip archive ({err})") from None


def _speech_members(zipped, archive: Path, result: UnpackResult) -> dict:
    """clip id -> member of the archive's audio+video speech clips; the others counted or listed as skipped."""
    clips = {}
    for member in zipped.infolist():
        if member.is_dir():
            continue
        stem = _speech_clip(member, archive, result)
        if stem is None:
            continue
        other = f"{archive.name}:{clips[stem].filename}" if stem in clips else result.origin.get(stem)
        if other:
            raise DownloadError(f"{archive}: members '{other}' and '{archive.name}:{member.filename}' are both "
                                f"clip {stem}; nothing unpacked from {archive.name} (remove the wrong one)")
        clips[stem] = member
    return clips


def _speech_clip(member, archive: Path, result: UnpackResult) -> str | None:
    """The clip id of an audio+video speech clip member, else None (video-only copies counted, others listed)."""
    where = f"{archive.name}:{member.filename}"
    try:
        clip = parse_clip_id(member.filename)
    except BadClipName as err:
        result.skipped.append({"file": where, "reason": str(err)})
        return None
    if clip.modality == 2:
        result.video_only_copies += 1
        return None
    if clip.modality != 1 or clip.vocal_channel != 1 or not member.filename.endswith(".mp4"):
        result.skipped.append({"file": where, "reason": "not an audio+video speech clip (01-01-*.mp4)"})
        return None
    return clip.stem


def _extract(zipped, member, archive: Path, target: Path) -> None:
    where = f"{archive.name}:{member.filename}"
    with zipped.open(member) as source, atomic_path(target) as tmp, open(tmp, "wb") as out:
        while True:
            try:
                block = source.read(CHUNK)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
                raise DownloadError(f"{where}: cannot extract ({err}); the archive is corrupt or truncated") from None
            if not block:
                break
            try:
                out.write(block)
            except OSError as err:
                raise write_error(target, err) from None
