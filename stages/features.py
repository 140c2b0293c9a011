"""Stage 4: precomputed tensors: face-frame embeddings, log-mel spectrograms and their embeddings."""
import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avemo.audio import LogMel, fix_length, load_wav
from avemo.features import bgr_to_tensor, embed, load_backbone, spectrogram_to_image
from avemo.io import atomic_path, load_params, read_json, write_json
from avemo.stage import run_stage
from avemo.errors import StageError
from avemo.video import load_strip


def video_features(faces: Path, backbone, n_frames: int) -> tuple[list[str], np.ndarray]:
    clips = sorted(read_json(faces / "tracks.json"))
    embeddings = [embed(backbone, bgr_to_tensor(load_strip(faces / "strips" / f"{c}.jpg", n_frames)))
                  for c in tqdm(clips, desc="video embeddings", unit="clip")]
    return clips, np.stack(embeddings).astype(np.float16)


def audio_features(audio: Path, cfg: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Fixed windows of the waveform (offset_s, duration_s) and their log-mel spectrograms."""
    rate = cfg["sample_rate"]
    logmel = LogMel(rate, cfg["n_mels"], cfg["n_fft"], cfg["hop_ms"])
    wavs = sorted((audio / "wav").glob("*.wav"))
    length, offset = int(cfg["duration_s"] * rate), int(cfg["offset_s"] * rate)
    waves = np.stack([fix_length(load_wav(w, rate), length, offset) for w in tqdm(wavs, desc="waveforms", unit="clip")])
    specs = np.stack([logmel(wave) for wave in tqdm(waves, desc="log-mel", unit="clip")])
    return [w.stem for w in wavs], waves.astype(np.float16), specs.astype(np.float16)


def run(cfg: dict, audio_cfg: dict, n_frames: int, faces: Path, audio: Path, out: Path) -> dict:
    torch.manual_seed(0)
    backbone, size, weights_used = load_backbone(cfg["backbone"], cfg["weights"])
    video_clips, video_emb = video_features(faces, backbone, n_frames)
    audio_clips, waves, logmel = audio_features(audio, audio_cfg)
    if not video_clips or not audio_clips:
        raise StageError(f"{faces} / {audio}: no usable clips for features")
    audio_emb = np.concatenate([embed(backbone, spectrogram_to_image(logmel[i:i + 64]))
                                for i in tqdm(range(0, len(logmel), 64), desc="spectrogram embeddings")])
    with atomic_path(out) as tmp:
        tmp.mkdir()
        np.savez(tmp / "video.npz", clips=np.array(video_clips), embeddings=video_emb)
        np.savez(tmp / "audio.npz", clips=np.array(audio_clips), logmel=logmel, wave=waves,
                 embeddings=audio_emb.astype(np.float16))
        preprocessing = {"faces": read_json(faces / "report.json")["config"], "audio": audio_cfg, "features": cfg}
        info = {"weights": weights_used, "preprocessing": preprocessing, "embedding_size": size,
                "video_shape": list(video_emb.shape),
                "logmel_shape": list(logmel.shape), "audio_embedding_shape": list(audio_emb.shape),
                "clips_without_audio": sorted(set(video_clips) - set(audio_clips)),
                "clips_without_video": sorted(set(audio_clips) - set(video_clips))}
        write_json(tmp / "info.json", info)
    print(f"features: {weights_used}; video {video_emb.shape}, log-mel {logmel.shape}, "
          f"spectrogram embeddings {audio_emb.shape}")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    run_stage(lambda: run(params["features"], params["audio"], params["faces"]["n_frames"],
                          args.faces, args.audio, args.out))


if __name__ == "__main__":
    main()
