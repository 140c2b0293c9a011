"""Every layer of the Whisper encoder, in PyTorch, read from the files faster-whisper uses.

Speech-emotion work reads the middle layers of an ASR encoder (the SUPERB practice): the last ones keep the
words and drop the voice. faster-whisper (CTranslate2) returns only the final output, so the encoder is
rebuilt here and its weights read from the same CTranslate2 `model.bin` (a plain binary file: names, shapes,
raw numbers; nothing executed) that `faster_whisper.WhisperModel(model)` downloads, or found in the Hugging
Face cache offline (HF_HUB_OFFLINE=1). `model` is a faster-whisper name (tiny, base, small, medium,
large-v3, distil-large-v3; base is tested here, the larger ones load the same way), a folder holding a
CTranslate2 model.bin, or a folder of Hugging Face `openai/whisper-*` weights (model.safetensors or
pytorch_model.bin, read as tensors only; `transformers` is not needed).

States of layer k: 0 is the convolutional front end plus the position encodings, 1..L-1 the outputs of the
transformer blocks, L (6 for base) the final block's output after the final layer norm: exactly what
CTranslate2's `model.encode` returns (tests/test_whisper_layers.py). A 3 s window gives 300 log-mel frames
and 150 steps of 20 ms a layer (d = 512 for base).

Outputs (params.yaml features.audio.whisper_layers), per clip:
- `output: pooled`: (len(layers), 2 d) float: each layer's mean and standard deviation over the steps;
- `output: sequence`: (len(layers), steps // pool, d): each layer's states averaged over `pool` steps.
`windows: several` (pooled only) reads windows of audio.duration_s every `hop_s` seconds over the whole clip
instead of the fixed window, and averages their pooled states (avemo.preprocess.several_windows)."""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ParamError, StageError
from .spec import Encoder, EncoderSpec
from .whisper import OFFLINE_HINT, SIZES

OUTPUTS = ("pooled", "sequence")
WINDOWS = ("fixed", "several")
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # CTranslate2 DataType order


@dataclass(frozen=True)
class Dims:
    n_mels: int
    width: int
    heads: int
    n_layers: int
    n_ctx: int


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, then a 4x GELU feed-forward, each added to its input."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_ln, self.qkv, self.out = nn.LayerNorm(width), nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp_ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.mlp_ln(x))


class WhisperLayersEncoder(nn.Module):
    """Whisper's audio encoder returning the states of every layer (0 .. n_layers)."""

    def __init__(self, dims: Dims):
        super().__init__()
        self.dims = dims
        self.conv1 = nn.Conv1d(dims.n_mels, dims.width, 3, padding=1)
        self.conv2 = nn.Conv1d(dims.width, dims.width, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(dims.n_ctx, dims.width))
        self.blocks = nn.ModuleList(Block(dims.width, dims.heads) for _ in range(dims.n_layers))
        self.ln_post = nn.LayerNorm(dims.width)

    def forward(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """(n, n_mels, frames) log-mel, an even number of frames <= 3000 -> n_layers + 1 tensors (n, frames/2, d)."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        states = [x + self.positions[:x.shape[1]]]
        for block in self.blocks:
            states.append(block(states[-1]))
        states[-1] = self.ln_post(states[-1])
        return states


# --- weights -------------------------------------------------------------------------------------------------

def read_ctranslate2(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin whose names start with `prefix`, as float32 arrays."""
    out = {}
    with open(path, "rb") as f:
        def read(fmt: str):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return f.read(read("H"))[:-1].decode("utf-8")

        version = read("I")
        if version < 5:
            raise StageError(f"{path}: CTranslate2 model format {version}; convert it again with ctranslate2>=3")
        string(), read("I")  # spec name and revision
        for _ in range(read("I")):
            name, rank = string(), read("B")
            shape = [read("I") for _ in range(rank)]
            dtype, n_bytes = read("B"), read("I")
            if not name.startswith(prefix):
                f.seek(n_bytes, 1)
                continue
            if dtype not in CT2_DTYPES or dtype == 1:
                raise StageError(f"{path}: {name} is stored as type {dtype} (quantized?); give a float16 or "
                                 "float32 model")
            values = np.frombuffer(f.read(n_bytes), CT2_DTYPES[dtype]).reshape(shape)
            out[name[len(prefix):]] = values.astype(np.float32)
    return out


def ctranslate2_state(variables: dict[str, np.ndarray]) -> tuple[Dims, dict[str, torch.Tensor]]:
    """CTranslate2 encoder variables -> (dims, state dict of WhisperLayersEncoder)."""
    n_layers = len({k.split("/")[0] for k in variables if re.match(r"layer_\d+/", k)})
    state = {"conv1.weight": variables["conv1/weight"], "conv1.bias": variables["conv1/bias"],
             "conv2.weight": variables["conv2/weight"], "conv2.bias": variables["conv2/bias"],
             "positions": variables["position_encodings/encodings"],
             "ln_post.weight": variables["layer_norm/gamma"], "ln_post.bias": variables["layer_norm/beta"]}
    for i in range(n_layers):
        src, dst = f"layer_{i}/", f"blocks.{i}."
        pairs = {"self_attention/layer_norm/gamma": "attn_ln.weight", "self_attention/layer_norm/beta": "attn_ln.bias",
                 "self_attention/linear_0/weight": "qkv.weight", "self_attention/linear_0/bias": "qkv.bias",
                 "self_attention/linear_1/weight": "out.weight", "self_attention/linear_1/bias": "out.bias",
                 "ffn/layer_norm/gamma": "mlp_ln.weight", "ffn/layer_norm/beta": "mlp_ln.bias",
                 "ffn/linear_0/weight": "mlp.0.weight", "ffn/linear_0/bias": "mlp.0.bias",
                 "ffn/linear_1/weight": "mlp.2.weight", "ffn/linear_1/bias": "mlp.2.bias"}
        state.update({dst + b: variables[src + a] for a, b in pairs.items()})
    n_mels, width = variables["conv1/weight"].shape[1], variables["conv1/weight"].shape[0]
    heads = int(variables["num_heads"]) if "num_heads" in variables else width // 64
    dims = Dims(n_mels, width, heads, n_layers, variables["position_encodings/encodings"].shape[0])
    return dims, {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A .safetensors file (an 8-byte header length, a JSON header, raw little-endian numbers) as arrays."""
    types = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}
    raw = path.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    header, base, out = json.loads(raw[8:8 + length]), 8 + length, {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        if spec["dtype"] == "BF16":  # bfloat16: the high half of a float32
            words = np.frombuffer(raw[base + start:base + end], np.uint16).astype(np.uint32) << 16
            out[name] = words.view(np.float32).reshape(spec["shape"])
        elif spec["dtype"] in types:
            out[name] = np.frombuffer(raw[base + start:base + end], types[spec["dtype"]]).reshape(spec["shape"])
    return out


def hugging_face_state(tensors: dict[str, np.ndarray], heads: int) -> tuple[Dims, dict[str, torch.Tensor]]:
    """transformers' WhisperModel / WhisperForConditionalGeneration tensors -> (dims, state dict)."""
    enc = "model.encoder." if any(k.startswith("model.encoder.") for k in tensors) else "encoder."
    t = {k[len(enc):]: np.asarray(v, dtype=np.float32) for k, v in tensors.items() if k.startswith(enc)}
    n_layers = len({k.split(".")[1] for k in t if k.startswith("layers.")})
    state = {"conv1.weight": t["conv1.weight"], "conv1.bias": t["conv1.bias"], "conv2.weight": t["conv2.weight"],
             "conv2.bias": t["conv2.bias"], "positions": t["embed_positions.weight"],
             "ln_post.weight": t["layer_norm.weight"], "ln_post.bias": t["layer_norm.bias"]}
    for i in range(n_layers):
        a, b = f"layers.{i}.", f"blocks.{i}."
        width = t[a + "self_attn.q_proj.weight"].shape[0]
        state[b + "qkv.weight"] = np.concatenate([t[a + f"self_attn.{p}_proj.weight"] for p in "qkv"])
        state[b + "qkv.bias"] = np.concatenate([t[a + "self_attn.q_proj.bias"], np.zeros(width, np.float32),
                                                t[a + "self_attn.v_proj.bias"]])  # Whisper's key has no bias
        pairs = {"self_attn.out_proj.weight": "out.weight", "self_attn.out_proj.bias": "out.bias",
                 "self_attn_layer_norm.weight": "attn_ln.weight", "self_attn_layer_norm.bias": "attn_ln.bias",
                 "final_layer_norm.weight": "mlp_ln.weight", "final_layer_norm.bias": "mlp_ln.bias",
                 "fc1.weight": "mlp.0.weight", "fc1.bias": "mlp.0.bias", "fc2.weight": "mlp.2.weight",
                 "fc2.bias": "mlp.2.bias"}
        state.update({b + d: t[a + s] for s, d in pairs.items()})
    width = state["conv1.weight"].shape[0]
    dims = Dims(state["conv1.weight"].shape[1], width, heads, n_layers, state["positions"].shape[0])
    return dims, {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}


def model_dir(model: str) -> Path:
    """The folder of `model`: itself when it is a folder, else faster-whisper's download (or offline cache) of it."""
    if Path(model).is_dir():
        return Path(model)
    if model not in SIZES:
        raise ParamError(f"features.audio.whisper_layers.model: '{model}' is neither a folder nor one of "
                         f"{', '.join(SIZES)}")
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(model, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1"))
    except Exception as err:  # noqa: BLE001 - hub errors share no base class
        raise StageError(f"Whisper '{model}': cannot find its files ({type(err).__name__}); {OFFLINE_HINT}") from None


def _state_of(folder: Path) -> tuple[Dims, dict[str, torch.Tensor]]:
    if (folder / "model.bin").is_file():
        return ctranslate2_state(read_ctranslate2(folder / "model.bin"))
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    if (folder / "model.safetensors").is_file():
        tensors = _read_safetensors(folder / "model.safetensors")
    elif (folder / "pytorch_model.bin").is_file():
        tensors = {k: v.float().numpy() for k, v in
                   torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True).items()}
    else:
        raise StageError(f"{folder}: no model.bin (CTranslate2), model.safetensors or pytorch_model.bin (Hugging Face)")
    heads = config.get("encoder_attention_heads")
    if heads is None:
        raise StageError(f"{folder}/config.json: encoder_attention_heads missing (a Hugging Face Whisper config)")
    return hugging_face_state(tensors, int(heads))


@lru_cache(maxsize=2)
def load_whisper_layers(model: str = "base", device: str = "cpu") -> WhisperLayersEncoder:
    """The encoder of `model` (cached per process), float32, in eval mode."""
    folder = model_dir(model)
    try:
        dims, state = _state_of(folder)
    except (KeyError, ValueError, struct.error) as err:
        raise StageError(f"{folder}: not a Whisper model this reader knows ({type(err).__name__}: {err})") from None
    encoder = WhisperLayersEncoder(dims)
    encoder.load_state_dict(state)
    return encoder.eval().to(device)


def weights_name(model: str) -> str:
    return f"whisper-{model}:openai" if model in SIZES else f"whisper:{Path(model).name}"


# --- encoding ------------------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _feature_extractor(n_mels: int):
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(feature_size=n_mels)


def log_mel(windows: np.ndarray, n_mels: int) -> np.ndarray:
    """(n, samples) 16 kHz windows -> (n, n_mels, frames) Whisper log-mel (faster-whisper's), an even number of
    frames, at most 30 s."""
    extract = _feature_extractor(n_mels)
    mels = np.stack([extract(np.asarray(w, dtype=np.float32)) for w in windows])
    return mels[..., :min(mels.shape[-1] // 2 * 2, 3000)]


def check_settings(cfg: dict, n_layers: int | None = None) -> tuple[list[int] | None, str, int]:
    """(layers or None for all, output, pool) of features.audio.whisper_layers, checked (its windows too)."""
    layers, output, pool = cfg.get("layers", "all"), cfg.get("output", "pooled"), cfg.get("pool", 3)
    if output not in OUTPUTS:
        raise ParamError(f"features.audio.whisper_layers.output: '{output}'; choose one of {', '.join(OUTPUTS)}")
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise ParamError(f"features.audio.whisper_layers.pool: {pool!r}; give a whole number of steps, 1 or more")
    check_windows(cfg, output)
    if layers == "all":
        return None, output, pool
    top = "L" if n_layers is None else n_layers
    if (not isinstance(layers, list) or not layers or
            any(isinstance(k, bool) or not isinstance(k, int) or k < 0 or (n_layers is not None and k > n_layers)
                for k in layers)):
        raise ParamError(f"features.audio.whisper_layers.layers: {layers!r}; give `all` or a list of layer "
                         f"numbers 0..{top} (0: the front end, {top}: the final output)")
    return list(layers), output, pool


def check_windows(cfg: dict, output: str) -> None:
    windows, hop = cfg.get("windows", "fixed"), cfg.get("hop_s")
    if windows not in WINDOWS:
        raise ParamError(f"features.audio.whisper_layers.windows: {windows!r}; choose one of {', '.join(WINDOWS)}")
    if windows == "fixed":
        return
    if output != "pooled":
        raise ParamError("features.audio.whisper_layers.windows: several averages pooled states; it needs "
                         f"output: pooled (not {output})")
    if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not hop > 0:
        raise ParamError(f"features.audio.whisper_layers.hop_s: {hop!r}; windows: several needs the seconds "
                         "between window starts, more than 0")


@torch.inference_mode()
def encode_layers(encoder: WhisperLayersEncoder, windows: np.ndarray, layers=None, output: str = "pooled",
                  pool: int = 3) -> np.ndarray:
    """(n, samples) windows -> (n, len(layers), 2 d) pooled or (n, len(layers), steps // pool, d) sequences."""
    mel = torch.from_numpy(log_mel(windows, encoder.dims.n_mels)).to(encoder.positions.device)
    states = encoder(mel)
    chosen = torch.stack([states[k] for k in (range(len(states)) if layers is None else layers)], dim=1)
    if output == "pooled":
        return torch.cat([chosen.mean(dim=2), chosen.std(dim=2, unbiased=False)], dim=-1).float().cpu().numpy()
    steps = chosen.shape[2] // pool * pool
    n, k, _, d = chosen.shape
    return chosen[:, :, :steps].reshape(n, k, steps // pool, pool, d).mean(dim=3).float().cpu().numpy()


def load(cfg: dict, context) -> Encoder:
    model = load_whisper_layers(str(cfg["model"]), context.device)
    layers, output, pool = check_settings(cfg, model.dims.n_layers)
    return Encoder("whisper_layers", "audio", weights_name(str(cfg["model"])), cfg,
                   lambda window: encode_layers(model, window[None], layers, output, pool)[0])


ENCODERS = (EncoderSpec("whisper_layers", "audio", ("model", "layers", "output", "pool"), load, shape=(7, 1024),
                        offline=OFFLINE_HINT, pooling="per_layer", code=("whisper.py",)),)
