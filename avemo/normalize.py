"""Feature standardisation under the two evaluation protocols, and while training.

- `single_clip` (the headline, what `predict` does): the model sees one clip of a person it has never
  seen; every input is standardised with the mean and deviation of the training actors' clips only.
- `speaker_adapted` (needs several clips of the person): each clip is standardised with statistics of k
  other, unlabeled clips of the same person (never the clip being scored), shrunk towards the training
  statistics by `prior_clips` pseudo-clips: with k = 0 it is single_clip, with many clips it is the
  person's own mean and deviation. `k=None` takes all of that person's other clips; the enrolment curve
  takes k = 1, 2, 4, 8, 16 at random.

Training modes (`train.normalization`): `global` (training statistics for every clip: tuned for
single_clip), `speaker` (each actor's own statistics over all their clips: tuned for speaker_adapted) and
`enrolment` (each clip, every epoch, standardised with a random number k of its actor's other clips,
k = 0 included: one model for both protocols and every enrolment size).

Statistics are per feature: over frames or time steps for sequences, per mel band for log-mel. Raw
inputs (face crops, waveform) are left as they are (normalised inside the models).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io import choice

MODES = ("global", "speaker", "enrolment")
RAW_INPUTS = ("frames", "wave")
ENROLMENT_SIZES = (1, 2, 4, 8, 16)
EPS = 1e-5


def feature_axis(name: str) -> int:
    """The per-clip axis that indexes features: the mel band for log-mel, else the last one."""
    return 0 if name == "logmel" else -1


def _to_2d(name: str, values: np.ndarray) -> np.ndarray:
    """(n, ..., d) -> (n, m, d): m observations of d features per clip."""
    values = np.asarray(values, dtype=np.float32)
    if name == "logmel":  # (n, mels, frames): features are the mel bands
        values = np.swapaxes(values, 1, 2)
    return values.reshape(len(values), -1, values.shape[-1])


def _broadcast(name: str, stat: np.ndarray, ndim: int) -> np.ndarray:
    """(n, d) per-clip statistics shaped to broadcast against (n, ...) clip arrays."""
    if name == "logmel":
        return stat[:, :, None]
    return stat.reshape(stat.shape[0], *([1] * (ndim - 2)), stat.shape[1])


@dataclass
class Stats:
    mean: np.ndarray  # (d,)
    var: np.ndarray   # (d,)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var) + EPS


@dataclass
class Moments:
    """Per clip: number of observations, sum and sum of squares of each feature; any set of clips'
    statistics is then a sum of rows."""
    count: np.ndarray    # (n,)
    total: np.ndarray    # (n, d)
    squares: np.ndarray  # (n, d)

    @classmethod
    def of(cls, name: str, values: np.ndarray) -> "Moments":
        flat = _to_2d(name, values).astype(np.float64)
        return cls(np.full(len(flat), flat.shape[1], dtype=np.float64), flat.sum(axis=1), np.square(flat).sum(axis=1))

    def select(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(c, n) 0/1 selection -> per row: number of clips, mean (c, d), variance (c, d)."""
        count = weights @ self.count
        safe = np.maximum(count, 1.0)[:, None]
        mean = (weights @ self.total) / safe
        var = np.maximum((weights @ self.squares) / safe - np.square(mean), 0.0)
        return weights.sum(axis=1), mean, var

    def pooled(self) -> Stats:
        _, mean, var = self.select(np.ones((1, len(self.count))))
        return Stats(mean[0], var[0])


def shrink(clips: np.ndarray, mean: np.ndarray, var: np.ndarray, prior: Stats, prior_clips: float):
    """Per row: statistics of `clips` clips pooled with `prior_clips` pseudo-clips of the prior (the
    training actors): the mixture's mean and variance. Rows with 0 clips get the prior itself."""
    w = (clips / np.maximum(clips + prior_clips, EPS))[:, None]
    pooled_mean = w * mean + (1 - w) * prior.mean
    pooled_var = w * (var + np.square(mean - pooled_mean)) + (1 - w) * (prior.var + np.square(prior.mean - pooled_mean))
    return pooled_mean, np.sqrt(pooled_var) + EPS


def others_matrix(actors: np.ndarray, k: int | None, rng: np.random.Generator | None) -> np.ndarray:
    """(n, n) 0/1: row i selects k other clips of clip i's actor (all of them when k is None), never i."""
    n = len(actors)
    same = (actors[:, None] == actors[None, :]) & ~np.eye(n, dtype=bool)
    if k is None:
        return same.astype(np.float64)
    out = np.zeros((n, n))
    for i in range(n):
        candidates = np.flatnonzero(same[i])
        if k > 0 and len(candidates):
            out[i, rng.choice(candidates, size=min(k, len(candidates)), replace=False)] = 1.0
    return out


def own_actor_matrix(actors: np.ndarray) -> np.ndarray:
    """(n, n) 0/1: row i selects every clip of clip i's actor, i included (the `speaker` training mode)."""
    return (actors[:, None] == actors[None, :]).astype(np.float64)


class ProtocolNormalizer:
    """Training-actor statistics per input, and the standardisation of any set of clips under a protocol."""

    def __init__(self, prior: dict[str, Stats], prior_clips: float = 2.0):
        self.prior, self.prior_clips = prior, float(prior_clips)

    @classmethod
    def fit(cls, inputs: dict[str, np.ndarray], prior_clips: float = 2.0) -> "ProtocolNormalizer":
        return cls({name: Moments.of(name, values).pooled() for name, values in inputs.items()
                    if name not in RAW_INPUTS}, prior_clips)

    def _apply(self, name: str, values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float32)
        return ((values - _broadcast(name, mean, values.ndim)) / _broadcast(name, std, values.ndim)).astype(np.float32)

    def _with_weights(self, inputs: dict[str, np.ndarray], weights: np.ndarray, shrunk: bool = True) -> dict:
        out = {}
        for name, values in inputs.items():
            if name not in self.prior:
                out[name] = values
                continue
            clips, mean, var = Moments.of(name, values).select(weights)
            if shrunk:
                mean, std = shrink(clips, mean, var, self.prior[name], self.prior_clips)
            else:
                std = np.sqrt(var) + EPS
            out[name] = self._apply(name, values, mean, std)
        return out

    def single_clip(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every clip with the training actors' statistics: reads nothing of any other clip."""
        out = {}
        for name, values in inputs.items():
            if name not in self.prior:
                out[name] = values
                continue
            stats = self.prior[name]
            n = len(values)
            out[name] = self._apply(name, values, np.tile(stats.mean, (n, 1)), np.tile(stats.std, (n, 1)))
        return out

    def speaker_adapted(self, inputs: dict[str, np.ndarray], actors: np.ndarray, k: int | None = None,
                        seed: int = 0) -> dict[str, np.ndarray]:
        """Each clip with statistics of k other clips of its actor (all others when k is None)."""
        rng = np.random.default_rng(seed)
        return self._with_weights(inputs, others_matrix(np.asarray(actors), k, rng))

    def with_enrolment(self, inputs: dict[str, np.ndarray], enrolment: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Clips of one person standardised with the statistics of that person's k enrolment clips
        (`enrolment`, the same inputs stacked), shrunk towards the training statistics as speaker_adapted is."""
        out = {}
        for name, values in inputs.items():
            if name not in self.prior:
                out[name] = values
                continue
            moments = Moments.of(name, enrolment[name])
            clips, mean, var = moments.select(np.ones((1, len(moments.count))))
            mean, std = shrink(clips, mean, var, self.prior[name], self.prior_clips)
            n = len(values)
            out[name] = self._apply(name, values, np.repeat(mean, n, axis=0), np.repeat(std, n, axis=0))
        return out

    def training_view(self, inputs: dict[str, np.ndarray], actors: np.ndarray, mode: str,
                      rng: np.random.Generator, sizes=(0,) + ENROLMENT_SIZES + (None,)) -> dict[str, np.ndarray]:
        """The training clips as the model sees them in one epoch under training mode `mode`."""
        choice(mode, MODES, "train.normalization")
        actors = np.asarray(actors)
        if mode == "global":
            return self.single_clip(inputs)
        if mode == "speaker":
            return self._with_weights(inputs, own_actor_matrix(actors), shrunk=False)
        weights = np.zeros((len(actors), len(actors)))
        draws = rng.integers(0, len(sizes), size=len(actors))
        for size_index in np.unique(draws):
            rows = np.flatnonzero(draws == size_index)
            weights[rows] = others_matrix(actors, sizes[size_index], rng)[rows]
        return self._with_weights(inputs, weights)

    def state_dict(self) -> dict:
        return {"prior_clips": self.prior_clips,
                "prior": {name: {"mean": s.mean.astype(np.float32), "var": s.var.astype(np.float32)}
                          for name, s in self.prior.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ProtocolNormalizer":
        prior = {name: Stats(np.asarray(s["mean"], dtype=np.float64), np.asarray(s["var"], dtype=np.float64))
                 for name, s in state["prior"].items()}
        return cls(prior, state["prior_clips"])
