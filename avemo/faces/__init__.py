"""Faces stage internals: sampled-frame decoding (decode), face detectors (detect, mtcnn), box tracking
between sampled frames (track), crops and strips (crop), and the per-clip stage (stage).

`avemo.video` is the public "clip -> face track" module built on these; nothing here imports it except
`stage`, which runs it per clip."""
