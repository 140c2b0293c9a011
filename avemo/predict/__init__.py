"""Predict emotions in any video, audio file, camera or stream with a checkpoint from models/:
`avemo predict INPUT ...` or `python -m avemo.predict INPUT ...` (docs/predict.md).

Preprocessing is the stages' own code: avemo.faces.clip.crop_faces, then avemo.preprocess (the faces stage's
JPEG strip read back, the audio window, every encoder, float16 storage), with the settings the checkpoint
records (its inputs' info.json). One clip is standardised with the training actors' statistics
(single_clip); --enroll CLIPS gives the person's own (speaker_adapted). One job per module, none
importing this package's __init__ (whose names load lazily, so that `avemo predict` starts quickly):

    loading    the models directory and params.yaml, a name or path -> checkpoint -> Predictor
    predictor  Predictor: crops and samples -> the stages' inputs -> class probabilities
    inputs     the input file: existence, audio track, face crops, audio window inside the real sound
    clip       clip mode (one prediction per file), audio fallback, no-face / no-audio errors
    enrol      --enroll: other clips of the person -> their inputs, for speaker-adapted statistics
    window     stream mode's frame grid, windows and per-window prediction
    sources    stream mode's video capture and audio feed (file or bounded live pipe)
    stream     stream mode's reader thread and queue: run_stream
    timeline   stream results per frame and aggregated into one answer
    plot       --plot: the probabilities of a stream over time as a picture
    annotate   --annotate: boxes, labels and bars drawn, audio muxed back
    output     probabilities by name, aggregation rule, terminal table, CSV/JSON rows
    paths      many inputs (files, directories, globs) and the checks of output paths
    batch      many files: workers, one CSV/JSONL row per file as it goes, reruns skip what is done
    cli        the command line
"""
from importlib import import_module

_NAMES = {
    "annotate_video": "annotate", "DEFAULT_MODEL": "cli", "main": "cli", "ClipResult": "clip",
    "predict_clip": "clip", "Enrolment": "enrol", "build_enrolment": "enrol", "available_models": "loading",
    "default_models_dir": "loading", "load_predictor": "loading", "resolve_model": "loading",
    "Predictor": "predictor", "StreamResult": "stream", "run_stream": "stream", "frame_rows": "timeline",
    "summary": "timeline", "Window": "window", "run_batch": "batch", "Job": "batch", "expand_inputs": "paths",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'avemo.predict' has no attribute '{name}'")
    value = getattr(import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value
