"""Pretrained files that no library caches for us (FER2013 mini-XCEPTION, MTCNN): kept in the torch hub
cache beside torchvision's checkpoints, downloaded there on first use like torchvision does, checked by
sha256. Without network, one line names the file, where it goes and how to put it there offline."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch

from .errors import StageError


def checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


@lru_cache(maxsize=None)
def _verified(path: str, sha256: str) -> bool:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha256


def hub_file(name: str, url: str, sha256: str, offline_hint: str) -> Path:
    """`<torch hub>/checkpoints/<name>`, downloaded from `url` when absent; refused when its sha256 differs."""
    path = checkpoints_dir() / name
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=False)
        except Exception as err:  # noqa: BLE001 - URLError, HTTPError, timeouts, OSError all mean the same here
            path.unlink(missing_ok=True)
            raise StageError(f"{path}: pretrained weights missing and cannot be downloaded from {url} "
                             f"({type(err).__name__}); {offline_hint}") from None
    if not _verified(str(path), sha256):
        raise StageError(f"{path}: sha256 differs from the published file ({sha256[:16]}...); delete it to "
                         f"download again, or {offline_hint}")
    return path
