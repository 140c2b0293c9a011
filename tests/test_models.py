"""Every model of params.yaml: forward and backward on a tiny batch of the right shapes."""
import numpy as np
import pytest
import torch
import yaml

from avemo.aggregate import aggregate
from avemo.models import N_CLASSES, build_model, model_inputs
from avemo.training import predict_proba
from avemo.training.augment import augment
from avemo.triplets import TripletSampler
from conftest import ROOT

MODELS = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny batches gain nothing from intra-op threads, and on a shared CPU every operation waits for its
    slowest thread: one thread made the 3D-CNN tests 5-8x faster on the project's loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
# Every input (the registry's encoders and the face crops), small: per-frame face features, face crops, the audio window's encodings.
SHAPES = {"imagenet": (4, 32), "fer": (4, 135), "frames": (4, 32, 32, 3), "logmel": (64, 101), "wave": (16000,),
          "spectrogram": (32,), "whisper": (5, 16), "wav2vec2": (5, 24), "hubert": (5, 24), "wavlm": (5, 24),
          "egemaps": (88,)}


def tiny_batch(names, size=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch = {}
    for name in names:
        if name == "frames":
            batch[name] = torch.randint(0, 256, (size, *SHAPES[name]), dtype=torch.uint8, generator=generator)
        else:
            batch[name] = torch.randn((size, *SHAPES[name]), generator=generator)
    return batch


HEAVY = {"mvit_v2_s"}  # 16 x 224 x 224 clips through MViTv2-S: ~90 s on a busy 2-core CPU


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in sorted(MODELS)])
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
    batch = tiny_batch(("imagenet",))
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
    batch = tiny_batch(("logmel", "wave", "imagenet", "whisper"))
    augmented = augment(batch, torch.Generator().manual_seed(0))
    assert not torch.equal(augmented["logmel"], batch["logmel"]) and not torch.equal(augmented["wave"], batch["wave"])
    assert torch.equal(augmented["imagenet"], batch["imagenet"]) and torch.equal(augmented["whisper"], batch["whisper"]) and augmented["wave"].shape == batch["wave"].shape
    model = build_model("spectrogram_cnn", SHAPES, {"source": "mfcc"})
    first = predict_proba(model, batch, "cpu")
    assert np.array_equal(first, predict_proba(model, batch, "cpu"))  # evaluation is deterministic: no augmentation


# --- end-to-end frame models, 3D ResNet-101, snippets, per-frame audio-visual alignment ---------------

def test_snippets_cover_the_clip_evenly():
    from avemo.models.video import snippet_indices

    index = snippet_indices(16, 6, 16)  # the design's 6 x 16 from the faces stage's 16 crops
    assert index.shape == (6, 16) and (index.flatten().diff() >= 0).all()  # in time order, snippet after snippet
    counts = torch.bincount(index.flatten(), minlength=16)
    assert counts.min() == counts.max() == 6  # every crop used, equally often
    for s, snippet in enumerate(index):  # snippet s spans the s-th sixth of the clip
        assert s * 16 / 6 - 1 <= snippet.min() and snippet.max() <= (s + 1) * 16 / 6
    assert torch.equal(snippet_indices(96, 6, 16).flatten(), torch.arange(96))  # enough frames: all distinct
    assert snippet_indices(16, 2, 4).flatten().tolist() == [1, 3, 5, 7, 9, 11, 13, 15]  # fewer: evenly spaced
    counts = torch.bincount(snippet_indices(16, 5, 7).flatten(), minlength=16)
    assert counts.min() >= 2 and counts.max() - counts.min() <= 1


@pytest.mark.slow  # an 85 M-parameter network built twice
def test_r3d_101_size_and_weights_file_round_trip(tmp_path):
    from avemo.models.video import video_resnet
    from avemo.errors import StageError

    torch.manual_seed(0)
    model = video_resnet(101)
    assert model.out_features == 2048 and sum(p.numel() for p in model.parameters()) == 85_207_488
    assert [len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4)] == [3, 4, 23, 3]
    state = model.state_dict()
    kinetics = {f"module.{k}": v for k, v in state.items()}  # DataParallel names and a 400-class head
    kinetics.update({"module.fc.weight": torch.zeros(400, 2048), "module.fc.bias": torch.zeros(400)})
    torch.save({"state_dict": kinetics, "epoch": 200}, tmp_path / "r3d101_kinetics.pth")
    torch.manual_seed(1)
    loaded = video_resnet(101, weights_path=str(tmp_path / "r3d101_kinetics.pth")).state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)

    missing = tmp_path / "nowhere" / "r3d101_K_200ep.pth"
    with pytest.raises(StageError, match=f"{missing}: 3D ResNet-101 weights file not found"):
        video_resnet(101, weights_path=str(missing))
    smaller = {k: v for k, v in state.items() if not k.startswith("layer3.22.")}
    smaller["stem.0.weight"] = torch.zeros(64, 3, 7, 7, 7)  # e.g. Hara et al.'s 7x7x7 stem
    torch.save(smaller, tmp_path / "other.pth")
    with pytest.raises(StageError, match=r"other.pth: not a state dict of this 3D ResNet-101.*missing keys.*"
                                         r"layer3\.22.*stem\.0\.weight \(64, 3, 7, 7, 7\)"):
        video_resnet(101, weights_path=str(tmp_path / "other.pth"))
    built = build_model("video3d", SHAPES, {"backbone": "r3d_101", "weights_path": str(tmp_path / "r3d101_kinetics.pth")})
    assert built.latent_size == 2048 and torch.equal(built.backbone.stem[0].weight, state["stem.0.weight"])


def test_crop_normalisation_is_shared_and_matches_the_features_stage():
    from avemo.backbones import IMAGENET_MEAN, IMAGENET_STD
    from avemo.encoders.imagenet import bgr_to_tensor
    from avemo.models.video import KINETICS_MEAN, KINETICS_STD, frames_to_clip, normalize_frames

    frames = torch.randint(0, 256, (2, 3, 8, 8, 3), dtype=torch.uint8)
    imagenet = normalize_frames(frames, IMAGENET_MEAN, IMAGENET_STD)
    assert torch.allclose(imagenet[1], bgr_to_tensor(frames[1].numpy()), atol=1e-6)  # as the frame embeddings
    rgb = frames.flip(-1).permute(0, 4, 1, 2, 3).float() / 255.0
    assert torch.equal(frames_to_clip(frames), (rgb - KINETICS_MEAN) / KINETICS_STD)  # as Video3D always did


def test_frame_cnn_weights_error_names_the_cache_file(monkeypatch):
    import urllib.error

    import torchvision

    from avemo.errors import StageError

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(StageError, match=r"resnet18-f37072fd\.pth.*args\.weights: none"):
        build_model("frame_cnn_sequence", SHAPES, {"backbone": "resnet18", "weights": "IMAGENET1K_V1"})


def test_frame_cnn_frozen_backbone_trains_the_lstm_only():
    model = build_model("frame_cnn_sequence", SHAPES, {"backbone": "resnet18", "freeze_backbone": True, "hidden": 8})
    model.train()
    assert not model.backbone.training and model.sequence.training
    torch.nn.functional.cross_entropy(model(tiny_batch(("frames",))), torch.tensor([0, 3, 7])).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.sequence.parameters())


def test_av_frame_slices_follow_the_faces_stage_sampling():
    from avemo.models.fusion import frame_slice_weights
    from avemo.faces.sampling import sample_indices

    n, fps, clip_s = 16, 30.0, 3.7
    weights = frame_slice_weights(n, 301, clip_s, 0.5, 3.0)  # 3 s log-mel from 0.5 s, 10 ms hop
    columns = 0.5 + torch.arange(301) * 0.01
    times = torch.tensor(sample_indices(int(clip_s * fps), n)) / fps  # where the faces stage takes frame i
    heard = weights.sum(dim=1) > 0
    for i in range(n):
        if heard[i]:  # a contiguous run of columns around the frame's time, within its segment
            cols = columns[weights[i].bool()]
            assert len(cols) == int(weights[i].sum()) and cols.diff().max() < 0.011
            assert cols.min() - 0.005 <= times[i] + clip_s / n / 2 and times[i] - clip_s / n / 2 <= cols.max() + 0.005
            assert abs(float(cols.mean()) - float(times[i])) < clip_s / n / 2
        else:  # segment outside the 0.5-3.5 s window
            assert times[i] < 0.5 or times[i] > 3.5
    assert heard.tolist() == [False] * 2 + [True] * 14  # frame 15 hears the window's last 30 ms
    assert (weights.sum(dim=0) <= 1).all()  # no column shared by two frames


def test_av_frame_lstm_window_matches_the_audio_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    args = params["models"]["av_frame_lstm"]["args"]
    assert (args["audio_offset_s"], args["audio_duration_s"]) == (params["audio"]["offset_s"], params["audio"]["duration_s"])


def test_av_frame_lstm_gives_unheard_frames_the_no_audio_vector():
    shapes = {"imagenet": (16, 32), "logmel": (64, 301)}
    model = build_model("av_frame_lstm", shapes, {"audio_channels": 8, "hidden": 8}).eval()
    logmel = torch.randn(2, 64, 301)
    with torch.no_grad():
        model.no_audio.fill_(7.0)
        audio = model.frame_audio(logmel)
        assert audio.shape == (2, 16, 16)
        assert (audio[:, :2] == 7.0).all() and (audio[:, 2:] < 7.0).all()  # frames 0-1 lie before the window
        changed = logmel.clone()
        changed[:, :, 150:] = 0.0  # the second half of the window: frames 0-8 must not change
        assert torch.equal(model.frame_audio(changed)[:, :8], audio[:, :8])
        assert not torch.equal(model.frame_audio(changed)[:, 10:15], audio[:, 10:15])


def test_every_model_reads_known_inputs_only():
    from avemo.encoders.registry import names

    for name, entry in MODELS.items():
        inputs = model_inputs(entry["architecture"], entry.get("args", {}))
        assert inputs and set(inputs) <= set(names()) | {"frames"}, name


def test_late_fusion_is_the_weighted_sum_of_its_branches_log_probabilities():
    args = {"branches": {"audio": {"model": "embedding_mlp", "args": {"inputs": ["whisper"], "hidden": 0}},
                         "video": {"model": "embedding_mlp", "args": {"inputs": ["fer"], "hidden": 0}}},
            "weights": "learned"}
    assert model_inputs("late_fusion", args) == ("whisper", "fer")
    torch.manual_seed(0)
    model = build_model("late_fusion", SHAPES, args).eval()
    with torch.no_grad():
        model.fusion.copy_(torch.tensor([0.3, -0.4]))
        batch = tiny_batch(("whisper", "fer"))
        weights = torch.softmax(torch.tensor([0.3, -0.4]), dim=0)
        branches = [torch.log_softmax(b(batch), dim=1) for b in model.branches.values()]
        assert torch.allclose(model(batch), weights[0] * branches[0] + weights[1] * branches[1], atol=1e-6)
    assert model.fusion_weights() == pytest.approx(dict(zip(("audio", "video"), weights.tolist())))
    equal = build_model("late_fusion", SHAPES, {**args, "weights": "equal"})
    assert not equal.fusion.requires_grad and equal.fusion_weights() == {"audio": 0.5, "video": 0.5}
    with pytest.raises(ValueError, match="args.weights: 'product' is not valid"):
        build_model("late_fusion", SHAPES, {**args, "weights": "product"})
