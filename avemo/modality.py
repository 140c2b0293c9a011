"""Which modalities a model's inputs come from: audio, video or audio+video."""
from __future__ import annotations

VIDEO_SOURCES = ("imagenet", "fer", "frames")
AUDIO_SOURCES = ("logmel", "wave", "spectrogram", "whisper", "whisper_layers", "wav2vec2", "hubert", "wavlm",
                 "egemaps")


def modality(inputs) -> str:
    inputs = set(inputs)
    video, audio = bool(inputs & set(VIDEO_SOURCES)), bool(inputs & set(AUDIO_SOURCES))
    return {(True, True): "audio+video", (True, False): "video", (False, True): "audio"}.get((video, audio), "none")


def combined(modalities) -> str:
    parts = {p for m in modalities for p in m.split("+")} - {"none"}
    return modality(["frames"] * ("video" in parts) + ["wave"] * ("audio" in parts))
