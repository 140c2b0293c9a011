"""Which frames a clip's N samples are: the faces stage decodes these, stream mode's window grid takes the
same places, and the snippet models index their crops the same way."""
from __future__ import annotations


def sample_indices(n_total: int, n: int) -> list[int]:
    """`n` frame indices spread at equal intervals over `n_total` frames (centres of n equal segments)."""
    if n_total <= 0:
        return []
    return [min(n_total - 1, int((i + 0.5) * n_total / n)) for i in range(n)]
