"""The same feature bytes on any x86-64 CPU with AVX2. The numeric libraries pick their kernels by the
instructions the CPU offers (AVX-512 on one machine, AVX2 on another; MKL also by vendor), and other kernels
round differently: the encoders' outputs, then every model and metric, changed in the last bits on another
CPU. Imported first by avemo/__init__.py, before torch, CTranslate2, numpy or OpenCV load, `pin()` caps each
library at AVX2 through its own environment variable (a variable already set wins). AVEMO_CPU_PIN=0 leaves
them free: faster on AVX-512 CPUs, but the committed results are then not reproduced byte for byte.
Measurements: docs/reproducibility.md."""
from __future__ import annotations

import os
import platform

# The AVX2 level of every library on the stages' paths; each one measured to change some encoder's bytes on
# an AVX-512 CPU when left to the library (benchmarks/cpu_pin.py --ablation; docs/reproducibility.md).
PIN = {
    "ATEN_CPU_CAPABILITY": "avx2",        # PyTorch's own vectorised kernels (whisper_layers)
    "ONEDNN_MAX_CPU_ISA": "AVX2",         # oneDNN: PyTorch's convolutions, CTranslate2's matrix products (fer, whisper)
    "CT2_FORCE_CPU_ISA": "AVX2",          # CTranslate2's own kernels (whisper)
    "CT2_USE_MKL": "0",                   # CTranslate2 takes MKL on Intel CPUs only: oneDNN everywhere
    "MKL_CBWR": "COMPATIBLE",             # MKL (PyTorch's matmuls): one branch on Intel and AMD (whisper_layers)
    "OPENBLAS_CORETYPE": "Haswell",       # numpy's OpenBLAS: AVX2 kernels, not SkylakeX's (whisper's log-mel)
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's own SIMD loops: none beyond AVX2 (log-mel)
}
SWITCH = "AVEMO_CPU_PIN"


def offers_avx2() -> bool:
    """Whether this is an x86-64 CPU with AVX2 and FMA (Linux: /proc/cpuinfo; elsewhere assumed)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return True
    return "avx2" in flags and "fma" in flags


def pin(environ=os.environ) -> dict[str, str]:
    """Set PIN's variables not set yet (unless AVEMO_CPU_PIN=0 or the CPU lacks AVX2); the ones it set."""
    if environ.get(SWITCH, "1") == "0" or not offers_avx2():
        return {}
    added = {key: value for key, value in PIN.items() if key not in environ}
    environ.update(added)
    return added


def settings() -> dict[str, str | None]:
    """The pin variables in effect (None: unset), for caches whose results depend on them."""
    return {key: os.environ.get(key) for key in PIN}


pin()
