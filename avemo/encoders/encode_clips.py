"""Stages encode_video@NAME and encode_audio@NAME: one encoder over every clip, through the per-clip
preprocessing path (avemo.preprocess) and a content-addressed per-clip cache (avemo.cache), written to
data/features/NAME/ as features.npz (clips, values as float16) and info.json (weights, settings, shape,
clips that could not be encoded and why)."""
from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..audio import load_wav
from ..cache import ClipCache
from ..errors import StageError, VideoError
from ..io import as_final, atomic_path, read_json, remove_stale_temporaries, save_npz, write_error
from ..parallel import map_clips, resolve_workers
from ..preprocess import audio_inputs, face_inputs
from ..entry import write_final_json
from ..faces.strip import load_strip
from .registry import code_files, load_encoder, modality_of


def _sources(modality: str, source: Path) -> tuple[dict[str, Path], dict]:
    """Clip -> input file (face strip or wav), and the settings of that input that the outputs depend on
    (video: the faces stage's, which `predict` repeats on a new video)."""
    if modality == "video":
        faces = read_json(source / "report.json")["config"]
        clips = sorted(read_json(source / "tracks.json"))
        return {c: source / "strips" / f"{c}.jpg" for c in clips}, {"faces": faces}
    wavs = sorted((source / "wav").glob("*.wav"))
    return {w.stem: w for w in wavs}, {}


def encoder_settings(name: str, features: dict, audio: dict) -> tuple[dict, dict]:
    """(the encoder's own settings, the window settings) of params.yaml `features` and `audio`."""
    modality = modality_of(name)
    section = features.get(modality) or {}
    if name not in section:
        raise StageError(f"params.yaml features.{modality}.{name}: missing (the encoders of features.{modality} "
                         f"are: {', '.join(section) or 'none'})")
    window = {k: audio[k] for k in ("sample_rate", "offset_s", "duration_s")} if modality == "audio" else {}
    return dict(section[name] or {}), window


_worker: dict = {}  # this process's encoder (loaded once per worker process by `load_in_worker`)


def load_in_worker(name: str, cfg: dict, sample_rate: int, logmel_cfg: dict | None, device: str) -> None:
    """Each worker: one torch thread (the same kernels, so the same bytes, whatever the machine's core
    count; the cores go to the workers), and its own copy of the encoder."""
    torch.set_num_threads(1)
    _worker["encoder"] = load_encoder(name, cfg, sample_rate, logmel_cfg, device)


def encode_clip(job: dict, item: tuple[str, Path]) -> dict:
    """One clip through the per-clip cache (in a worker process): its result and the cache counters moved."""
    clip, source = item
    target, encoder, cache = job["tmp"] / "clips" / f"{clip}.npy", _worker["encoder"], job["cache"]

    def compute() -> dict:
        try:
            if encoder.modality == "video":
                values = face_inputs(load_strip(source, job["n_frames"]), {encoder.name: encoder})[encoder.name]
            else:
                samples = load_wav(source, job["audio"]["sample_rate"])
                values = audio_inputs(samples, job["audio"], {encoder.name: encoder})[encoder.name]
        except (VideoError, RuntimeError, OSError, ValueError) as err:
            return {"status": "failed", "message": f"{source}: {encoder.name} could not encode it ({err})"}
        np.save(target, values.astype(np.float16))
        return {"status": "ok", "shape": list(values.shape)}

    try:
        result = cache.through(source, {"values.npy": target}, compute, keep=lambda r: r["status"] == "ok",
                               check=lambda r, stored: r["status"] == "ok" and stored == {"values.npy"})
    except OSError as err:  # the output itself could not be written: full disk, file size limit...
        result = {"status": "write_failed", "message": str(as_final(err, job["tmp"], job["out"]))}
    return {"clip": clip, "result": result, "cache": cache.take_counts()}


def run_encode(name: str, features: dict, audio: dict, source: Path, out: Path, cache_dir: Path | None = None,
               device: str = "cpu") -> dict:
    modality = modality_of(name)
    cfg, window = encoder_settings(name, features, audio)
    logmel_cfg = (features.get("audio") or {}).get("logmel")
    workers = 1 if device == "cuda" else resolve_workers(features.get("workers", 1), "features.workers")
    encoder = load_encoder(name, cfg, audio["sample_rate"], logmel_cfg, device)  # missing weights: fail here, once
    files, context = _sources(modality, Path(source))
    if not files:
        raise StageError(f"{source}: no clips to encode (run the {'faces' if modality == 'video' else 'extract_audio'} stage)")
    leftovers = remove_stale_temporaries(out.parent, out.name)
    n_frames = context.get("faces", {}).get("n_frames")
    cache = ClipCache(cache_dir, f"encode_{name}", {**encoder.config, **window, "n_frames": n_frames},
                      code=code_files(name) + [Path(__file__).resolve().parent.parent / "preprocess.py"],
                      extra={"torch": torch.__version__, "weights": encoder.weights})
    with atomic_path(out) as tmp:
        (tmp / "clips").mkdir(parents=True)
        job = {"tmp": tmp, "out": out, "cache": cache, "n_frames": n_frames, "audio": audio}
        done = map_clips(partial(encode_clip, job), list(files.items()), workers, f"encode {name}", processes=True,
                         initializer=partial(load_in_worker, name, cfg, audio["sample_rate"], logmel_cfg, device),
                         stop=lambda r: r["result"]["status"] == "write_failed")
        results = {}
        for item in done:
            if item is not None:
                cache.add_counts(item["cache"])
                results[item["clip"]] = item["result"]
        failed = [r["message"] for r in results.values() if r["status"] == "write_failed"]
        if failed:
            raise StageError(f"{failed[0]}; stopped, {out} left as it was")
        info = _write_outputs(name, modality, encoder, window, context, results, tmp, out, source)
    cache.write_summary()
    if leftovers:
        print(f"encode {name}: removed {leftovers} leftover(s) of an interrupted run beside {out}")
    for line in cache.warnings + [s["message"] for s in info["skipped"]]:
        print(f"warning: {line}")
    print(f"encode {name}: {info['clips']} clips -> {tuple(info['shape'])} ({encoder.weights}); {cache.describe()}")
    return info


def _write_outputs(name, modality, encoder, window, context, results, tmp: Path, out: Path, source) -> dict:
    """features.npz and info.json in the temporary folder; a write failure names the final path."""
    ok = sorted(c for c, r in results.items() if r["status"] == "ok")
    if not ok:
        raise StageError(f"{source}: {name} could not encode any clip; first problem: "
                         f"{next(iter(results.values()))['message']}")
    values = np.stack([np.load(tmp / "clips" / f"{c}.npy") for c in ok])
    try:
        save_npz(tmp / "features.npz", {"clips": np.array(ok), "values": values})
    except OSError as err:
        raise StageError(f"{as_final(write_error(tmp / 'features.npz', err), tmp, out)}; {out} left as it was") from None
    shutil.rmtree(tmp / "clips")
    info = {"input": name, "modality": modality, "weights": encoder.weights, "config": encoder.config,
            "window": window, **context, "clips": len(ok), "shape": list(values.shape[1:]),
            "skipped": [{"clip": c, "message": r["message"]} for c, r in sorted(results.items()) if r["status"] != "ok"]}
    write_final_json({"info.json": info}, tmp, out)
    return info
