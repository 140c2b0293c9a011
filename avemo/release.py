"""The released model (stage `release`, the default of `avemo predict`): the late fusion of one logistic
regression per encoder (params `release.baseline`), trained on every actor of the data source, with one
branch per input combination (audio+video, video, audio) so that it answers from whatever a file has.

Fitting one model (`fit_release`), given its validation actors:
1. each encoder's logistic regression is grid-searched by actor (GroupKFold) on the other actors;
2. on the validation actors, per branch and protocol: the fusion weights of its encoders (`baselines.fusion`:
   grid or calibrated) and a temperature of the fused probabilities (validation log-likelihood);
3. each regression is refitted with its chosen C on all actors (training and validation).
The released model is fitted on every actor (validation actors drawn among them); its accuracy and
calibration come from the same procedure cross-validated by actor (`cross_validate`): every fold's test
actors are held out from all three steps."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .baselines.features import matrix
from .baselines.fit import class_probabilities
from .baselines.bundle import bundle_classifier, fuse
from .baselines.fit_and_score import fit_fusion, fit_one, layer_sets, readable_params, training_matrix
from .calibration import ECE_BINS, fit_temperature, reliability, reliability_diagram
from .cv import fold_split, pick_val_actors
from .errors import ParamError
from .encoders.registry import modality_of
from .ids import EMOTIONS
from .normalize import ProtocolNormalizer
from .protocols import PROTOCOLS, SINGLE_CLIP, SPEAKER_ADAPTED

BRANCH_ORDER = ("audio+video", "video", "audio")
LICENCE = "CC BY-NC-SA 4.0"
LICENCE_NOTE = ("derived from RAVDESS (Livingstone & Russo 2018, CC BY-NC-SA 4.0): non-commercial use, "
                "attribution, share-alike")


def branches_of(names: list[str]) -> dict[str, list[str]]:
    """Input combinations the model answers from: all inputs, the video ones, the audio ones."""
    video = [n for n in names if modality_of(n) == "video"]
    audio = [n for n in names if modality_of(n) == "audio"]
    out = {"audio+video": list(names)} if video and audio else {}
    if video:
        out["video"] = video
    if audio:
        out["audio"] = audio
    return out


def protocol_view(norm: ProtocolNormalizer, part, protocol: str) -> dict:
    """single_clip: training statistics; speaker_adapted: each clip with all other clips of its actor."""
    if protocol == SINGLE_CLIP:
        return norm.single_clip(part.inputs)
    return norm.speaker_adapted(part.inputs, part.actors)


def fit_release(baselines_cfg: dict, train_cfg: dict, data, val_actors: list[int], infos: dict | None = None) -> dict:
    """The in-memory bundle (avemo.baselines.bundle) of the release fitted on `data`'s actors, choosing
    fusion weights and temperatures on `val_actors` (steps in the module docstring)."""
    from sklearn.base import clone

    names = list(data.inputs)
    actors = sorted(int(a) for a in np.unique(data.actors))
    train = data.subset([a for a in actors if a not in val_actors])
    val = data.subset(val_actors)
    seed, mode = int(train_cfg.get("seed", 0)), train_cfg.get("normalization", "enrolment")
    prior_clips = train_cfg.get("prior_clips", 2.0)
    method = baselines_cfg.get("fusion", "grid")
    norm = ProtocolNormalizer.fit(train.inputs, prior_clips)
    searches = {}
    for name in names:
        x, y, groups = training_matrix(norm, train, mode, seed, [name])
        searches[name] = fit_one(baselines_cfg, "logreg", x, y, groups, seed,
                                 layer_sets(baselines_cfg, [name], infos) if infos else None)
    val_probs = {p: {name: class_probabilities(searches[name][1], matrix(protocol_view(norm, val, p), [name]))
                     for name in names} for p in PROTOCOLS}
    branches = {}
    for branch, inputs in branches_of(names).items():
        weights = {p: fit_fusion(method, [val_probs[p][n] for n in inputs], val.labels)[0] for p in PROTOCOLS}
        temperature = {p: fit_temperature(fuse([val_probs[p][n] for n in inputs], weights[p]), val.labels)
                       for p in PROTOCOLS}
        branches[branch] = {"inputs": inputs, "fusion_weights": {p: w.tolist() for p, w in weights.items()},
                            "temperature": temperature}
    full_norm = ProtocolNormalizer.fit(data.inputs, prior_clips)
    pipelines = []
    for name in names:
        x, y, groups = training_matrix(full_norm, data, mode, seed, [name])
        pipelines.append(([name], clone(searches[name][0].best_estimator_).fit(x, y)))
    return {"pipelines": pipelines, "branches": branches, "fusion_weights": {},
            "normalization": {"mode": mode, **full_norm.state_dict()},
            "best_params": {name: readable_params(s[0].best_params_, layer_sets(baselines_cfg, [name], infos)
                                                  if infos else None) for name, s in searches.items()},
            "train_actors": actors, "val_actors": sorted(val_actors), "n_train_clips": int(len(data.labels)),
            "classes": list(EMOTIONS)}


def uncalibrated(bundle: dict) -> dict:
    """The bundle without any temperature: each branch's fusion weights scaled to sum to 1 (a weighted geometric
    mean of its regressions' raw probabilities; calibrated fusion's weights hold its temperatures) and 1 as the
    branch's temperature. What "before calibration" means in the card."""
    def plain(weights):
        return (np.asarray(weights, dtype=float) / np.sum(weights)).tolist()

    return {**bundle, "branches": {b: {**s, "temperature": dict.fromkeys(PROTOCOLS, 1.0),
                                       "fusion_weights": {p: plain(w) for p, w in s["fusion_weights"].items()}}
                                   for b, s in bundle["branches"].items()}}


def score(bundle: dict, part) -> dict:
    """{branch: {protocol: (calibrated, uncalibrated) probabilities}} of `part`'s clips."""
    norm = ProtocolNormalizer.from_state_dict(bundle["normalization"])
    calibrated_fn, pool = bundle_classifier(bundle)
    raw_fn, _ = bundle_classifier(uncalibrated(bundle))
    out = {}
    for branch in bundle["branches"]:
        out[branch] = {}
        for p in PROTOCOLS:
            view = protocol_view(norm, part, p)
            out[branch][p] = (calibrated_fn(view, p, branch), raw_fn(view, p, branch))
    return out


def accuracies(labels: np.ndarray, probs: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    predicted = probs.argmax(axis=1)
    return {"accuracy": round(float(accuracy_score(labels, predicted)), 4),
            "balanced_accuracy": round(float(balanced_accuracy_score(labels, predicted)), 4)}


def cross_validate(params: dict, data, folds: list[int], infos: dict | None = None, log=print) -> dict:
    """The release's procedure on each fold of `cv.scheme` (test actors held out from everything):
    per fold, branch and protocol the accuracy (WA, UA) and ECE before/after calibration; pooled over
    the folds' test clips the reliability curves."""
    cv = params["cv"]
    results, pooled = [], {}
    for fold in folds:
        split = fold_split(cv["scheme"], fold, data.actors, cv["val_actors"], cv["seed"])
        if split is None:
            results.append({"fold": int(fold), "skipped": "none of its test actors is in the data"})
            continue
        test_actors = split["test_actors"]
        rest = data.subset([a for a in np.unique(data.actors) if int(a) not in test_actors])
        bundle = fit_release(params["baselines"], params["train_defaults"], rest, split["val_actors"], infos)
        test = data.subset(test_actors)
        scores = score(bundle, test)
        entry = {"fold": int(fold), "test_actors": test_actors, "val_actors": split["val_actors"],
                 "n_test": int(len(test.labels)), "branches": {}}
        for branch, by_protocol in scores.items():
            entry["branches"][branch] = {}
            for p, (cal, raw) in by_protocol.items():
                entry["branches"][branch][p] = {**accuracies(test.labels, cal),
                                                "ece_before": reliability(raw, test.labels)["ece"],
                                                "ece_after": reliability(cal, test.labels)["ece"],
                                                "temperature": bundle["branches"][branch]["temperature"][p]}
                store = pooled.setdefault(branch, {}).setdefault(p, {"labels": [], "cal": [], "raw": []})
                store["labels"].append(test.labels)
                store["cal"].append(cal)
                store["raw"].append(raw)
        av = entry["branches"].get("audio+video") or next(iter(entry["branches"].values()))
        log(f"release cv fold {fold}: single clip WA " + ", ".join(
            f"{b} {r[SINGLE_CLIP]['accuracy']:.3f}" for b, r in entry["branches"].items())
            + f" (ECE {av[SINGLE_CLIP]['ece_before']:.3f} -> {av[SINGLE_CLIP]['ece_after']:.3f})")
        results.append(entry)
    return {"scheme": cv["scheme"], "folds": results, "summary": summarise(results),
            "reliability": {b: {p: {"before": reliability(np.concatenate(s["raw"]), np.concatenate(s["labels"])),
                                    "after": reliability(np.concatenate(s["cal"]), np.concatenate(s["labels"]))}
                                for p, s in by_p.items()} for b, by_p in pooled.items()}}


def summarise(results: list[dict]) -> dict:
    """Mean and sample standard deviation over the folds that ran, per branch, protocol and figure."""
    done = [r for r in results if "branches" in r]
    if not done:
        raise ParamError("release: no cross-validation fold has test actors in the data")
    out = {}
    for branch in done[0]["branches"]:
        out[branch] = {}
        for p in PROTOCOLS:
            figures = {}
            for key in ("accuracy", "balanced_accuracy", "ece_before", "ece_after"):
                values = np.array([r["branches"][branch][p][key] for r in done])
                figures[key] = {"mean": round(float(values.mean()), 4),
                                "std": round(float(values.std(ddof=1)), 4) if len(values) > 1 else None}
            out[branch][p] = figures
    return {"folds": len(done), "branches": out}


def data_description(data_cfg: dict, data) -> str:
    source = data_cfg.get("source", "sample")
    name = {"sample": "embedded sample", "zenodo": "RAVDESS (zenodo)"}.get(source) or \
        Path(str(data_cfg.get("mirror", "")).rstrip("/")).name or "mirror"
    return f"{name}, {len(np.unique(data.actors))} actors, {len(data.labels)} clips"


def build_release(params: dict, data, infos: dict, folds: list[int], log=print) -> tuple[dict, dict]:
    """(in-memory bundle with its card, card dict): cross-validation first, then the model on every actor."""
    cfg = params["release"]
    cv = cross_validate(params, data, folds, infos, log)
    actors = sorted(int(a) for a in np.unique(data.actors))
    val_actors = pick_val_actors(actors, params["cv"]["val_actors"], params["cv"]["seed"])
    bundle = fit_release(params["baselines"], params["train_defaults"], data, val_actors, infos)
    summary = cv["summary"]["branches"]
    card = {"name": cfg["name"], "configuration": cfg["baseline"], "fusion": params["baselines"].get("fusion", "grid"),
            "licence": LICENCE, "licence_note": LICENCE_NOTE,
            "data": data_description(params["data"], data), "data_source": params["data"].get("source"),
            "actors": actors, "clips": int(len(data.labels)),
            "clips_per_emotion": {e: int((data.labels == i).sum()) for i, e in enumerate(EMOTIONS)},
            "encoders": {name: {"weights": info.get("weights"), "config": info.get("config")}
                         for name, info in infos.items()},
            "branches": {b: {"inputs": s["inputs"], "fusion_weights": s["fusion_weights"],
                             "temperature": s["temperature"]} for b, s in bundle["branches"].items()},
            "validation_actors": val_actors, "best_params": bundle["best_params"],
            "accuracy": {SINGLE_CLIP: summary[BRANCH_ORDER[0] if BRANCH_ORDER[0] in summary else next(iter(summary))]
                         [SINGLE_CLIP]["accuracy"]["mean"],
                         SPEAKER_ADAPTED: summary[next(iter(summary))][SPEAKER_ADAPTED]["accuracy"]["mean"],
                         "folds": cv["summary"]["folds"],
                         "by_branch": {b: {p: s[p]["accuracy"]["mean"] for p in PROTOCOLS} for b, s in summary.items()}},
            "cross_validation": cv}
    bundle.update(name=cfg["name"], card={k: card[k] for k in ("data", "accuracy", "licence")},
                  feature_set=cfg["baseline"], classifier="late_logreg", feature_info=infos)
    return bundle, card


def write_release(out: Path, bundle: dict, card: dict) -> None:
    """The model directory: model.json + model.npz, MODEL_CARD.md, model_card.json, reliability.png."""
    from .baselines.bundle import save_baseline, to_json
    from .io import atomic_path, write_json

    save_baseline(out, bundle)
    write_json(out / "model_card.json", to_json(card))
    rel = card["cross_validation"]["reliability"]
    branch = "audio+video" if "audio+video" in rel else next(iter(rel))
    reliability_diagram({"before calibration": rel[branch][SINGLE_CLIP]["before"],
                         "after (temperature per branch)": rel[branch][SINGLE_CLIP]["after"]},
                        out / "reliability.png",
                        f"{card['name']}, {branch}, single clip: {card['cross_validation']['summary']['folds']}-fold "
                        f"CV test clips ({rel[branch][SINGLE_CLIP]['after']['clips']})")
    with atomic_path(out / "MODEL_CARD.md") as tmp:
        tmp.write_text(card_markdown(card))


def card_markdown(card: dict) -> str:
    cv = card["cross_validation"]
    summary = cv["summary"]["branches"]

    def figure(f):
        return f"{f['mean']:.3f}" + (f" ± {f['std']:.3f}" if f.get("std") is not None else "")

    lines = [f"# Model card: `{card['name']}`", "",
             f"**What it is.** Late fusion of one logistic regression per frozen pretrained encoder "
             f"(`{card['configuration']}`), answering from whatever a file has: "
             + ", ".join(f"**{b}** ({' + '.join(s['inputs'])})" for b, s in card["branches"].items())
             + f". Encoders fused by `{card['fusion']}` late fusion (`baselines.fusion`); confidences are "
             "temperature-scaled per branch and protocol.", "",
             f"**Training data.** {card['data']} (source: `{card['data_source']}`); actors "
             f"{', '.join(map(str, card['actors']))}; clips per emotion: "
             + ", ".join(f"{e} {n}" for e, n in card["clips_per_emotion"].items())
             + f". Fusion weights and temperatures were chosen on validation actors "
             f"{', '.join(map(str, card['validation_actors']))}, then every regression was refitted on all actors.", "",
             f"**Licence.** {card['licence']}: {card['licence_note']}.", "",
             f"## Accuracy ({cv['summary']['folds']}-fold cross-validation by actor, `{cv['scheme']}`)", "",
             "The same procedure on each fold with the fold's test actors held out of everything (regressions, "
             "weights, temperatures). Mean ± sample std over folds; WA = accuracy, UA = balanced accuracy. "
             "Single clip: one clip of an unseen person; speaker adapted: standardised with the statistics "
             "of the person's other clips.", "",
             "| branch | single-clip WA | single-clip UA | speaker-adapted WA | speaker-adapted UA |",
             "|---|---|---|---|---|"]
    for b, s in summary.items():
        lines.append(f"| {b} | {figure(s[SINGLE_CLIP]['accuracy'])} | {figure(s[SINGLE_CLIP]['balanced_accuracy'])} "
                     f"| {figure(s[SPEAKER_ADAPTED]['accuracy'])} | {figure(s[SPEAKER_ADAPTED]['balanced_accuracy'])} |")
    lines += ["", "Per fold (single clip WA):", "", "| fold | test actors | " + " | ".join(summary) + " |",
              "|---|---|" + "---|" * len(summary)]
    for r in cv["folds"]:
        if "branches" in r:
            lines.append(f"| {r['fold']} | {', '.join(map(str, r['test_actors']))} | "
                         + " | ".join(f"{r['branches'][b][SINGLE_CLIP]['accuracy']:.3f}" for b in summary) + " |")
    rel = cv["reliability"]
    lines += ["", "## Calibration", "",
              f"Expected calibration error ({ECE_BINS} "
              "equal-width confidence bins) on the cross-validation test clips, pooled over folds, before and "
              "after temperature scaling fitted on each fold's validation actors:", "",
              "| branch | protocol | ECE before | ECE after | fold-mean ECE before | fold-mean ECE after |",
              "|---|---|---|---|---|---|"]
    for b, by_p in rel.items():
        for p, curves in by_p.items():
            s = summary[b][p]
            lines.append(f"| {b} | {p.replace('_', ' ')} | {curves['before']['ece']:.3f} | {curves['after']['ece']:.3f} "
                         f"| {figure(s['ece_before'])} | {figure(s['ece_after'])} |")
    lines += ["", "Reliability diagram (audio+video, single clip): `reliability.png`.", "",
              "Temperatures of this model (validation actors): "
              + "; ".join(f"{b}: " + ", ".join(f"{p.replace('_', ' ')} {t:.2f}" for p, t in s["temperature"].items())
                          for b, s in card["branches"].items()) + ".", "",
              "## Encoders", ""]
    for name, e in card["encoders"].items():
        lines.append(f"- `{name}`: weights {e['weights']}")
    lines += ["", "## Files", "", "`model.json` (configuration, statistics) and `model.npz` (arrays, read with "
              "`allow_pickle=False`): loading never executes code. `model_card.json` holds every figure above.", ""]
    return "\n".join(lines)


def release_data(cfg: dict, metadata: Path, features: Path):
    """The clips with every input of `release.baseline` (a late_logreg feature set), and the inputs' info."""
    from .baselines.features import load_pooled_set
    from .baselines.fit_and_score import baseline_parts

    feature_set, classifier = baseline_parts(cfg["baseline"])
    if classifier != "late_logreg":
        raise ParamError(f"release.baseline '{cfg['baseline']}': the release needs one classifier per encoder "
                         "(FEATURES-late_logreg) to answer from any input")
    return load_pooled_set(feature_set, Path(metadata), Path(features))
