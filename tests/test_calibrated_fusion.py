"""Calibrated late fusion (baselines.fusion: calibrated): a temperature per branch and non-negative weights
fitted on validation log-likelihood, stored as plain weights of the log-probabilities that `fuse` applies."""
import numpy as np
import pytest

from avemo.baselines.calibration import fit_calibrated, fit_temperature, fuse_calibrated
from avemo.baselines.bundle import fuse
from avemo.baselines.fit_and_score import fit_fusion
from avemo.errors import ParamError


def branch(labels, strength, overconfidence, rng):
    """Class probabilities of a branch whose scores are the label's one-hot times `strength` plus unit Gaussian
    noise: softmax(strength * scores) is the exact posterior; the branch says softmax(overconfidence * that)."""
    scores = rng.normal(size=(len(labels), 8)) + strength * np.eye(8)[labels]
    logits = overconfidence * strength * scores
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True)


@pytest.fixture
def branches():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 2000)
    return labels, [branch(labels, 2.0, 3.0, rng), branch(labels, 1.0, 1.0, rng), branch(labels, 0.0, 1.0, rng)]


def test_the_temperature_undoes_over_confidence(branches):
    labels, (sure, plain, _) = branches
    assert fit_temperature(sure, labels) == pytest.approx(3.0, rel=0.15)   # 3x over-confident
    assert fit_temperature(plain, labels) == pytest.approx(1.0, rel=0.15)


def test_weights_follow_the_information_and_fuse_reproduces_them(branches):
    labels, probs = branches
    fitted = fit_calibrated(probs, labels)
    # independent branches, each calibrated: the exact fusion is the product of their posteriors (weights 1)
    assert fitted["weights"][:2] == pytest.approx([1.0, 1.0], abs=0.1)
    assert fitted["effective"][2] <= 0.06  # the uninformative branch: temperature at its bound, ~no say
    assert np.allclose(fuse(probs, np.asarray(fitted["effective"])), fuse_calibrated(probs, fitted), atol=1e-6)
    weights, shown = fit_fusion("calibrated", probs, labels)
    assert np.allclose(weights, fitted["effective"]) and set(shown) == {"temperatures", "weights"}
    fused = fuse(probs, weights)
    loglik = np.log(fused[np.arange(len(labels)), labels]).mean()
    grid, _ = fit_fusion("grid", probs, labels)
    assert loglik >= np.log(fuse(probs, grid)[np.arange(len(labels)), labels]).mean()  # the objective it fits


def test_an_unknown_fusion_is_named(branches):
    labels, probs = branches
    with pytest.raises(ParamError, match="baselines.fusion: 'mean' is not valid; choose one of: grid, calibrated"):
        fit_fusion("mean", probs, labels)
