"""A pipeline step keeping the columns of some layers of a (clips, layers x width) matrix, so that the grid
search of a baseline chooses which layers of the Whisper encoder a classifier reads (`baselines.layer_sets`)
by the same actor-grouped cross-validation over the training actors as C."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class LayerColumns(TransformerMixin, BaseEstimator):
    def __init__(self, n_layers: int = 1, keep: tuple = (0,)):
        self.n_layers, self.keep = n_layers, keep

    def fit(self, features, labels=None):
        return self

    def transform(self, features):
        features = np.asarray(features)
        blocks = features.reshape(len(features), self.n_layers, -1)
        return blocks[:, list(self.keep)].reshape(len(features), -1)
