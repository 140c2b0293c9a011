"""Stages encode_video@NAME and encode_audio@NAME: one encoder over every clip, through the per-clip
preprocessing path (avemo.preprocess) and a content-addressed per-clip cache (avemo.cache), written to
data/features/NAME/ as features.npz (clips, values as float16) and info.json (weights, settings, shape,
clips that could not be encoded and why)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..audio import load_wav
from ..cache import ClipCache
from ..errors import StageError, VideoError
from ..io import atomic_path, read_json, remove_stale_temporaries
from ..preprocess import audio_inputs, audio_window, face_inputs
from ..stage import write_final_json
from ..video import load_strip
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


def run_encode(name: str, features: dict, audio: dict, source: Path, out: Path, cache_dir: Path | None = None,
               device: str = "cpu") -> dict:
    modality = modality_of(name)
    cfg, window = encoder_settings(name, features, audio)
    logmel_cfg = (features.get("audio") or {}).get("logmel")
    encoder = load_encoder(name, cfg, audio["sample_rate"], logmel_cfg, device)
    files, context = _sources(modality, Path(source))
    if not files:
        raise StageError(f"{source}: no clips to encode (run the {'faces' if modality == 'video' else 'extract_audio'} stage)")
    leftovers = remove_stale_temporaries(out.parent, out.name)
    cache = ClipCache(cache_dir, f"encode_{name}", {**encoder.config, **window,
                                                     "n_frames": context.get("faces", {}).get("n_frames")},
                      code=code_files(name) + [Path(__file__).resolve().parent.parent / "preprocess.py"],
                      extra={"torch": torch.__version__, "weights": encoder.weights})

    def compute(clip: str, target: Path) -> dict:
        try:
            if modality == "video":
                values = face_inputs(load_strip(files[clip], context["faces"]["n_frames"]), {name: encoder})[name]
            else:
                values = audio_inputs(audio_window(load_wav(files[clip], audio["sample_rate"]), audio), {name: encoder})[name]
        except (VideoError, RuntimeError, OSError, ValueError) as err:
            return {"status": "failed", "message": f"{files[clip]}: {name} could not encode it ({err})"}
        np.save(target, values.astype(np.float16))
        return {"status": "ok", "shape": list(values.shape)}

    with atomic_path(out) as tmp:
        (tmp / "clips").mkdir(parents=True)
        results = {}
        for clip in tqdm(files, desc=f"encode {name}", unit="clip"):
            target = tmp / "clips" / f"{clip}.npy"
            results[clip] = cache.through(files[clip], {"values.npy": target}, lambda: compute(clip, target),
                                          keep=lambda r: r["status"] == "ok",
                                          check=lambda r, stored: r["status"] == "ok" and stored == {"values.npy"})
        ok = [c for c, r in results.items() if r["status"] == "ok"]
        if not ok:
            raise StageError(f"{source}: {name} could not encode any clip; first problem: "
                             f"{next(iter(results.values()))['message']}")
        values = np.stack([np.load(tmp / "clips" / f"{c}.npy") for c in ok])
        np.savez(tmp / "features.npz", clips=np.array(ok), values=values)
        shutil.rmtree(tmp / "clips")
        info = {"input": name, "modality": modality, "weights": encoder.weights, "config": encoder.config,
                "window": window, **context, "clips": len(ok), "shape": list(values.shape[1:]),
                "skipped": [{"clip": c, "message": r["message"]} for c, r in results.items() if r["status"] != "ok"]}
        write_final_json({"info.json": info}, tmp, out)
    cache.write_summary()
    if leftovers:
        print(f"encode {name}: removed {leftovers} leftover(s) of an interrupted run beside {out}")
    for line in cache.warnings + [s["message"] for s in info["skipped"]]:
        print(f"warning: {line}")
    print(f"encode {name}: {len(ok)} clips -> {tuple(values.shape)} ({encoder.weights}); {cache.describe()}")
    return info
