"""Every model of params.yaml: forward and backward on a tiny batch of the right shapes."""
import numpy as np
import pytest
import torch
import yaml

from avemo.aggregate import aggregate
from avemo.models import N_CLASSES, build_model, model_inputs
from avemo.train import augment, predict_proba
from avemo.triplets import TripletSampler
from conftest import ROOT

MODELS = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]
SHAPES = {"video": (4, 32), "frames": (4, 32, 32, 3), "logmel": (64, 101), "wave": (16000,), "audio_emb": (32,)}


def tiny_batch(names, size=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch = {}
    for name in names:
        if name == "frames":
            batch[name] = torch.randint(0, 256, (size, *SHAPES[name]), dtype=torch.uint8, generator=generator)
        else:
            batch[name] = torch.randn((size, *SHAPES[name]), generator=generator)
    return batch


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward(name):
    entry = MODELS[name]
    args = entry.get("args", {})
    names = model_inputs(entry["architecture"], args)
    model = build_model(entry["architecture"], {k: SHAPES[k] for k in SHAPES}, args)
    batch, labels = tiny_batch(names), torch.tensor([0, 3, 7])
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    loss = model.loss(batch, labels, loss_fn) if hasattr(model, "loss") else loss_fn(model(batch), labels)
    if getattr(model, "triplet_weight", 0):
        loss = loss + model.triplet_loss(batch, tiny_batch(names, seed=1), tiny_batch(names, seed=2))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(batch).shape == (3, N_CLASSES)


def test_vote_aggregation_breaks_ties_by_probability_sum():
    frames = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0], [0.45, 0.55, 0.0]])
    # votes: class 0 twice, class 1 twice -> tie; probability sums 1.75 vs 2.25 -> class 1
    assert aggregate(frames, "vote").argmax() == 1
    frames[3] = [0.55, 0.45, 0.0]  # now 3 votes for class 0 despite a lower sum
    assert aggregate(frames, "vote").argmax() == 0 and aggregate(frames, "sum").argmax() == 1
    assert np.isclose(aggregate(frames, "vote").sum(), 1)
    with pytest.raises(ValueError, match="choose one of: sum, vote"):
        aggregate(frames, "mean")


def test_frame_voting_model_uses_the_same_tie_break():
    model = build_model("frame_voting", SHAPES, {"aggregation": "vote"}).eval()
    batch = tiny_batch(("video",))
    with torch.no_grad():
        frame_probs = torch.softmax(model.frame_logits(batch), dim=-1).numpy()
        clip = model(batch).argmax(dim=1).numpy()
    assert clip.tolist() == [aggregate(p, "vote").argmax() for p in frame_probs]


def test_triplets_are_valid_and_stay_in_their_partition():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 5])
    sampler = TripletSampler(labels, torch.Generator().manual_seed(0))
    anchors = np.arange(len(labels)).repeat(20)
    positives, negatives = sampler.sample(anchors)
    assert (labels[positives] == labels[anchors]).all() and (labels[negatives] != labels[anchors]).all()
    has_partner = np.isin(labels[anchors], [0, 1, 2])
    assert (positives[has_partner] != anchors[has_partner]).all()
    assert positives.max() < len(labels) and negatives.max() < len(labels)  # indices of this partition only


def test_augmentation_changes_training_batches_only():
    batch = tiny_batch(("logmel", "wave", "video"))
    augmented = augment(batch, torch.Generator().manual_seed(0))
    assert not torch.equal(augmented["logmel"], batch["logmel"]) and not torch.equal(augmented["wave"], batch["wave"])
    assert torch.equal(augmented["video"], batch["video"]) and augmented["wave"].shape == batch["wave"].shape
    model = build_model("spectrogram_cnn", SHAPES, {"source": "mfcc"})
    first = predict_proba(model, batch, "cpu")
    assert np.array_equal(first, predict_proba(model, batch, "cpu"))  # evaluation is deterministic: no augmentation
