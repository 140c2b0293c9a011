"""Random inputs in the exact layout and shapes of the faces, features and download stages, for timing
training where the real preprocessed data is not at hand (a freshly lent GPU machine): speed does not
depend on the values, so samples/s measured on these equals samples/s on real clips. Never use them for
accuracy. Shapes follow params.yaml (faces.n_frames, faces.size, audio.*, the backbone's embedding size).

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

EMBEDDING_SIZE = {"mobilenet_v2": 1280, "resnet18": 512, "resnet50": 2048, "resnet101": 2048}


def clip_ids(actors, per_actor: int) -> list[str]:
    """Valid RAVDESS audio+video speech ids, cycling through emotion, intensity, statement, repetition."""
    takes = [(e, i, s, r) for e in range(1, 9) for i in (1, 2) for s in (1, 2) for r in (1, 2) if not (e == 1 and i == 2)]
    return [f"01-01-{e:02d}-{i:02d}-{s:02d}-{r:02d}-{a:02d}" for a in actors
            for (e, i, s, r) in (takes * (per_actor // len(takes) + 1))[:per_actor]]


def make(out: Path, params: dict, actors, per_actor: int, seed: int = 0) -> None:
    import cv2

    from avemo.ids import parse_clip_id

    rng = np.random.default_rng(seed)
    faces, audio = params["faces"], params["audio"]
    clips = sorted(set(clip_ids(actors, per_actor)))
    n, frames, size = len(clips), faces["n_frames"], faces["size"]
    rate = audio["sample_rate"]
    samples = int(audio["duration_s"] * rate)
    mel_frames = 1 + samples // int(rate * audio["hop_ms"] / 1000)  # torchaudio MelSpectrogram, center=True
    emb = EMBEDDING_SIZE[params["features"]["backbone"]]
    (out / "faces" / "strips").mkdir(parents=True, exist_ok=True)
    (out / "features").mkdir(parents=True, exist_ok=True)
    for clip in clips:
        strip = rng.integers(0, 256, (size, size * frames, 3), dtype=np.uint8)
        cv2.imwrite(str(out / "faces" / "strips" / f"{clip}.jpg"), strip)
    (out / "faces" / "tracks.json").write_text(json.dumps({c: {"clip": c} for c in clips}))
    np.savez(out / "features" / "video.npz", clips=np.array(clips),
             embeddings=rng.standard_normal((n, frames, emb), dtype=np.float32).astype(np.float16))
    np.savez(out / "features" / "audio.npz", clips=np.array(clips),
             logmel=(rng.standard_normal((n, audio["n_mels"], mel_frames), dtype=np.float32) * 10 - 40).astype(np.float16),
             wave=(rng.standard_normal((n, samples), dtype=np.float32) * 0.05).astype(np.float16),
             embeddings=rng.standard_normal((n, emb), dtype=np.float32).astype(np.float16))
    info = {"weights": "synthetic-random-inputs", "embedding_size": emb,
            "preprocessing": {"faces": faces, "audio": audio, "features": params["features"]}}
    (out / "features" / "info.json").write_text(json.dumps(info))
    import pandas as pd

    pd.DataFrame([parse_clip_id(c).as_row() | {"file": f"{c}.mp4"} for c in clips]).to_csv(out / "metadata.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips-per-actor", type=int, default=60)
    parser.add_argument("--actors", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    make(args.out, yaml.safe_load(args.params.read_text()), args.actors, args.clips_per_actor)
    print(f"{args.out}: {len(args.actors) * args.clips_per_actor} synthetic clips (timing only, not accuracy)")


if __name__ == "__main__":
    main()
