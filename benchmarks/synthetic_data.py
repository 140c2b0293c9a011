"""Random inputs in the exact layout and shapes of the faces, encode and download stages, for timing
training where the real preprocessed data is not at hand (a freshly lent GPU machine): speed does not
depend on the values, so samples/s measured on these equals samples/s on real clips. Never use them for
accuracy. Written under --out: faces/ (strips/CLIP.jpg, tracks.json, report.json), features/NAME/
(features.npz with clips and float16 values, info.json) for every input encoder of avemo/encoders/registry.py
(or --inputs), metadata.csv. Shapes follow params.yaml (faces.n_frames, faces.crop_px, audio.*, each
encoder's settings in features.video / features.audio) and each encoder's output size.

  python benchmarks/synthetic_data.py --out /tmp/synthetic --clips-per-actor 60
  python benchmarks/training.py --features /tmp/synthetic/features --faces /tmp/synthetic/faces \
      --metadata /tmp/synthetic/metadata.csv --device cuda
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent

EMBEDDING_SIZE = {"mobilenet_v2": 1280, "resnet18": 512, "resnet50": 2048, "resnet101": 2048}  # ImageNet backbones
WHISPER_SIZE = {"tiny": 384, "base": 512, "small": 768, "medium": 1024, "large-v3": 1280, "distil-large-v3": 1280}
SSL_SIZE = 768  # torchaudio WAV2VEC2_BASE, HUBERT_BASE, WAVLM_BASE_PLUS
FER_SIZE = 7 + 128  # FER2013 mini-XCEPTION: 7 expression log-probabilities + 128 features
EGEMAPS_SIZE = 88  # eGeMAPSv02 functionals


def clip_ids(actors, per_actor: int) -> list[str]:
    """Valid RAVDESS audio+video speech ids, cycling through emotion, intensity, statement, repetition."""
    takes = [(e, i, s, r) for e in range(1, 9) for i in (1, 2) for s in (1, 2) for r in (1, 2) if not (e == 1 and i == 2)]
    return [f"01-01-{e:02d}-{i:02d}-{s:02d}-{r:02d}-{a:02d}" for a in actors
            for (e, i, s, r) in (takes * (per_actor // len(takes) + 1))[:per_actor]]


def input_shape(name: str, params: dict) -> tuple[int, ...]:
    """The per-clip shape of encoder `name`'s output (the encode stage's info.json `shape`)."""
    video, audio, window = params["features"]["video"], params["features"]["audio"], params["audio"]
    frames = params["faces"]["n_frames"]
    samples = int(window["duration_s"] * window["sample_rate"])
    if name == "imagenet":
        return frames, EMBEDDING_SIZE[video["imagenet"]["backbone"]]
    if name == "fer":
        return frames, FER_SIZE
    if name == "logmel":  # torchaudio MelSpectrogram, center=True
        return audio["logmel"]["n_mels"], 1 + samples // int(window["sample_rate"] * audio["logmel"]["hop_ms"] / 1000)
    if name == "wave":
        return (samples,)
    if name == "spectrogram":
        return (EMBEDDING_SIZE[audio["spectrogram"]["backbone"]],)
    if name == "whisper":  # 100 mel frames a second, states 20 ms apart, averaged over `pool` steps
        return samples // 160 // 2 // audio["whisper"]["pool"], WHISPER_SIZE[audio["whisper"]["model"]]
    if name in ("wav2vec2", "hubert", "wavlm"):  # 20 ms frames of the conv front end, averaged over `pool`
        return ((samples - 400) // 320 + 1) // audio[name]["pool"], SSL_SIZE
    if name == "egemaps":
        return (EGEMAPS_SIZE,)
    from avemo.encoders.registry import spec_of

    return spec_of(name).shape  # its documented shape (params.yaml's settings)


def make(out: Path, params: dict, actors, per_actor: int, inputs=None, seed: int = 0) -> int:
    """Write the synthetic inputs; returns the number of clips."""
    import cv2
    import pandas as pd

    from avemo.encoders.registry import modality_of, names
    from avemo.ids import parse_clip_id

    INPUTS = names() + ("frames",)
    inputs = list(inputs or INPUTS)
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        raise SystemExit(f"--inputs: {', '.join(unknown)} unknown; choose among {', '.join(INPUTS)}")
    rng = np.random.default_rng(seed)
    faces = {k: v for k, v in params["faces"].items() if k != "workers"}
    window = {k: params["audio"][k] for k in ("sample_rate", "offset_s", "duration_s")}
    clips = sorted(set(clip_ids(actors, per_actor)))
    n, frames, size = len(clips), faces["n_frames"], faces["crop_px"]
    if "frames" in inputs:
        (out / "faces" / "strips").mkdir(parents=True, exist_ok=True)
        for clip in clips:
            strip = rng.integers(0, 256, (size, size * frames, 3), dtype=np.uint8)
            cv2.imwrite(str(out / "faces" / "strips" / f"{clip}.jpg"), strip)
        (out / "faces" / "tracks.json").write_text(json.dumps({c: {"clip": c, "status": "ok"} for c in clips}))
        (out / "faces" / "report.json").write_text(json.dumps(
            {"config": faces, "clips": n, "synthetic": "random-inputs", "skipped": [], "no_face": [], "partial": []}))
    for name in (i for i in inputs if i != "frames"):
        shape = input_shape(name, params)
        values = rng.standard_normal((n, *shape), dtype=np.float32)
        if name == "logmel":
            values = values * 10 - 40  # dB
        elif name == "wave":
            values = values * 0.05
        folder = out / "features" / name
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "features.npz", clips=np.array(clips), values=values.astype(np.float16))
        modality = modality_of(name)
        info = {"input": name, "modality": modality, "weights": "synthetic-random-inputs",
                "config": params["features"][modality].get(name, {}), "window": window if modality == "audio" else {},
                **({"faces": faces} if modality == "video" else {}), "clips": n, "shape": list(shape), "skipped": []}
        (folder / "info.json").write_text(json.dumps(info, indent=1))
    pd.DataFrame([parse_clip_id(c).as_row() | {"file": f"{c}.mp4"} for c in clips]).to_csv(out / "metadata.csv", index=False)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips-per-actor", type=int, default=60)
    parser.add_argument("--actors", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--inputs", nargs="+", help="inputs to write (encoder names of avemo/encoders/registry.py, 'frames' for the "
                        "face crops; default: all of them)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    n = make(args.out, yaml.safe_load(args.params.read_text()), args.actors, args.clips_per_actor, args.inputs)
    print(f"{args.out}: {n} synthetic clips (timing only, not accuracy)")


if __name__ == "__main__":
    main()
