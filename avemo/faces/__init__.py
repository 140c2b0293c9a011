"""Face crops: which frames a clip samples (sampling), decoding only those (decode), face detectors (detect,
mtcnn), box tracking between sampled frames (track), the crop rule (crop), a clip's face track, the one crop
path of the faces stage, `predict` and stream mode (clip), the JPEG strip the crops are stored as (strip),
and the faces stage over every clip (crop_clips). Readers of stored crops need only strip and sampling."""
