"""Predict emotions in any video, audio file, camera or stream with a checkpoint from models/:
`avemo predict VIDEO ...` or `python -m avemo.predict VIDEO ...` (docs/predict.md).

Preprocessing is the stages' own code: avemo.video.crop_faces and the faces stage's JPEG strip
(save_strip/load_strip), avemo.audio.extract_audio/load_wav/fix_length/LogMel, avemo.features.embed and
spectrogram_to_image, with the features stage's float16 storage; run with the settings recorded in the
checkpoint (feature_info.preprocessing), or params.yaml's faces/audio/features sections for checkpoints
written before that key existed. One job per module, none importing this package's __init__:

    loading    the models directory and params.yaml, a name or path -> checkpoint -> Predictor
    predictor  Predictor: crops and samples -> the stages' inputs -> class probabilities
    inputs     the input file: existence, audio track, face crops, fixed audio window, JPEG strip
    clip       clip mode (one prediction per file), audio fallback, no-face / no-audio errors
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
from .loading import available_models, default_models_dir, default_params, load_predictor, resolve_model
from .predictor import Predictor
from .stream import StreamResult, run_stream
from .timeline import frame_rows, summary
from .window import Window

__all__ = ["DEFAULT_MODEL", "ClipResult", "Predictor", "StreamResult", "Window", "annotate_video",
           "available_models", "default_models_dir", "default_params", "frame_rows", "load_predictor", "main",
           "predict_clip", "resolve_model", "run_stream", "summary"]
