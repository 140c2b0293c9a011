"""The extract_audio stage: a 16 kHz mono wav per clip with ffmpeg (in worker threads: ffmpeg runs in
subprocesses); clips without or with silent audio are reported. With a cache directory, each clip's result is
looked up in a content-addressed cache first (avemo/cache.py), so a rerun after new clips were added only
decodes the new ones."""
import threading
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import soundfile as sf

from .audio import extract_audio, ffmpeg_exe
from .cache import ClipCache
from .errors import ParamError, StageError
from .io import as_final, atomic_path, remove_stale_temporaries, write_error
from .metadata import read_metadata
from .parallel import map_clips, resolve_workers
from .entry import write_final_json

HERE = Path(__file__).resolve().parent
CODE = [HERE / "audio.py", Path(__file__).resolve()]  # their change invalidates cached results
CACHED = ("ok", "no_audio", "silent")  # properties of the file's bytes; a failure may be transient: recomputed


def positive_int(params: dict, key: str, section: str = "audio") -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParamError(f"{section}.{key}: {value!r} is not valid; give a positive whole number")
    return value


def ffmpeg_version() -> str:
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.get_ffmpeg_version()
    except Exception:  # noqa: BLE001 - a version we cannot read still keys the cache by the binary's path
        return ffmpeg_exe()


def declared_seconds(video: Path) -> float | None:
    """Duration of the video stream the container declares (None when unknown)."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            return None
        frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
        return frames / fps if frames > 0 and fps > 0 else None
    finally:
        capture.release()


def extract(video: Path, wav: Path, rate: int) -> dict:
    """extract_audio's result, flagged `partial` when much less audio decodes than the file declares."""
    result = asdict(extract_audio(video, wav, rate))
    if result["status"] == "ok":
        declared = declared_seconds(video)
        if declared and result["seconds"] < 0.9 * declared - 0.1:
            result["partial"] = (f"{video}: only {result['seconds']:.2f} s of audio decoded of the "
                                 f"{declared:.2f} s the file declares (truncated file?); kept")
    return result


def run(params: dict, raw: Path, out: Path, cache_dir: Path | None = None) -> dict:
    rate = positive_int(params, "sample_rate")
    workers = resolve_workers(params.get("workers", 2), "audio.workers")  # threads: ffmpeg runs in subprocesses
    leftovers = remove_stale_temporaries(out.parent, out.name)
    clips = read_metadata(raw / "metadata.csv")["file"].tolist()
    cache = ClipCache(cache_dir, "extract_audio", {"sample_rate": rate}, code=CODE,
                      extra={"ffmpeg": ffmpeg_version(), "soundfile": sf.__version__})
    failure: list[OSError] = []  # the first output write error stops the remaining clips
    lock = threading.Lock()

    with atomic_path(out) as tmp:
        (tmp / "wav").mkdir(parents=True)

        def one(file: str):
            if failure:
                return None
            video, wav = raw / "clips" / file, tmp / "wav" / file.replace(".mp4", ".wav")
            try:
                result = cache.through(video, {"audio.wav": wav}, lambda: extract(video, wav, rate),
                                       keep=lambda r: r["status"] in CACHED,
                                       check=lambda r, files: r["status"] in CACHED
                                       and (("audio.wav" in files) == (r["status"] == "ok")))
                return {**result, "clip": video.stem}  # the key is the content: the same bytes may have another name
            except (OSError, sf.SoundFileError) as err:  # could not write the wav: full disk, size limit...
                if not isinstance(err, OSError):  # libsndfile does not say why
                    err = OSError(None, f"libsndfile: {err} (disk full or file size limit?)")
                with lock:
                    failure.append(as_final(write_error(wav, err), tmp, out))
                return None

        results = map_clips(one, clips, workers, "extract_audio")
        if failure:
            raise StageError(f"{failure[0]}; stopped, {out} left as it was")
        counts = Counter(r["status"] for r in results)
        if clips and counts["ok"] == 0:
            raise StageError(f"{raw / 'clips'}: no clip gave usable audio ({dict(counts)})")
        report = {"sample_rate": rate, "counts": dict(counts),
                  "skipped": [r for r in results if r["status"] != "ok"],
                  "partial": [r["partial"] for r in results if r.get("partial")]}
        write_final_json({"report.json": report}, tmp, out)
    cache.write_summary()
    if leftovers:
        print(f"extract_audio: removed {leftovers} leftover(s) of an interrupted run beside {out}")
    for warning in cache.warnings:
        print(f"warning: {warning}")
    for line in [problem["message"] for problem in report["skipped"]] + report["partial"]:
        print(f"warning: {line}")
    print(f"extract_audio: {dict(counts)}; {cache.describe()}")
    return report

