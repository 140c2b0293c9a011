"""Which modalities a model reads (audio, video or audio+video), from what made its inputs: each encoder's
info.json records its modality (from avemo/encoders/registry.py), and the face crops ('frames') are video."""
from __future__ import annotations

FRAMES = "frames"  # the faces stage's crops, an input of their own


def input_modality(name: str, info: dict) -> str:
    """video or audio: of the input `name`, made as its info (an encoder's info.json) says."""
    return "video" if name == FRAMES else info["modality"]


def modality(feature_info: dict[str, dict]) -> str:
    """Of a model's inputs, by name -> their info (avemo.data.feature_info)."""
    return joined(input_modality(name, info) for name, info in feature_info.items())


def joined(kinds) -> str:
    kinds = set(kinds)
    return {(True, True): "audio+video", (True, False): "video", (False, True): "audio"}.get(
        ("video" in kinds, "audio" in kinds), "none")


def combined(modalities) -> str:
    """The modality of several models together (an ensemble's members)."""
    return joined(part for m in modalities for part in m.split("+"))
