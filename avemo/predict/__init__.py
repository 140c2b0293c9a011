"""Predict emotions in any video, audio file, camera or stream with a checkpoint from models/:
`avemo predict VIDEO ...` or `python -m avemo.predict VIDEO ...` (docs/predict.md).

Preprocessing is the stages' own code: avemo.faces.clip.crop_faces, then avemo.preprocess (the faces stage's
JPEG strip read back, the audio window, every encoder, float16 storage), with the settings the checkpoint
records (its inputs' info.json). One clip is standardised with the training actors' statistics
(single_clip); --enroll CLIPS gives the person's own (speaker_adapted). One job per module, none
importing this package's __init__:

    loading    the models directory and params.yaml, a name or path -> checkpoint -> Predictor
    predictor  Predictor: crops and samples -> the stages' inputs -> class probabilities
    inputs     the input file: existence, audio track, face crops, fixed audio window
    clip       clip mode (one prediction per file), audio fallback, no-face / no-audio errors
    enrol      --enroll: other clips of the person -> their inputs, for speaker-adapted statistics
    window     stream mode's frame grid, windows and per-window prediction
    sources    stream mode's video capture and audio feed (file or live pipe)
    stream     stream mode's reader thread and queue: run_stream
    timeline   stream results per frame and aggregated into one answer
    annotate   --annotate: boxes, labels and bars drawn, audio muxed back
    output     probabilities by name, aggregation rule, terminal table, CSV/JSON rows
    cli        the command line
"""
from .annotate import annotate_video
from .cli import DEFAULT_MODEL, main
from .clip import ClipResult, predict_clip
from .enrol import Enrolment, build_enrolment
from .loading import available_models, default_models_dir, load_predictor, resolve_model
from .predictor import Predictor
from .stream import StreamResult, run_stream
from .timeline import frame_rows, summary
from .window import Window

__all__ = ["DEFAULT_MODEL", "ClipResult", "Enrolment", "Predictor", "StreamResult", "Window", "annotate_video",
           "available_models", "build_enrolment", "default_models_dir", "frame_rows", "load_predictor", "main",
           "predict_clip", "resolve_model", "run_stream", "summary"]
