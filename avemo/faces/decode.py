"""Decode only the frames a clip's N samples need.

A clip is demuxed once (cheap: compressed packets only), which gives the exact number of frames it
holds and each packet's place in presentation order. The decoder then gets every packet, but those
of frames that are not sampled are sent with `skip_frame = NONREF`: a frame that no other frame
references (most B-frames: 46-61 of the 99 frames of a RAVDESS clip) is then parsed and dropped
without being reconstructed, while reference frames are decoded as they must be. Sampled frames are
decoded in full and converted to BGR; no other frame is converted. The result is pixel-identical to
decoding everything (tests/test_detectors.py), since a skipped frame is by definition never used to
predict another.

A file whose packets do not all decode (cut or damaged data) falls back to decoding every frame it
can and sampling over those, like the original OpenCV path; an unreadable file raises VideoError
naming it. `METHODS` keeps the alternatives measured by benchmarks/preprocess.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VideoError
from ..parallel import thread_budget
from .sampling import sample_indices


def upright(frame) -> np.ndarray:
    """A decoded frame as BGR, turned as its display matrix says (phones store video sideways and say so
    in the metadata, which PyAV does not apply); OpenCV (stream mode, --annotate) turns frames the same way."""
    image = frame.to_ndarray(format="bgr24")
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


@dataclass
class Samples:
    frames: list  # BGR uint8 arrays, in frame order
    indices: list[int]  # frame index of each (sorted, distinct)
    fps: float
    total: int  # frames the sampling was spread over (those that could be decoded)
    declared: int  # frames the container declares (0 when unknown)
    decoded: int = 0  # frames the decoder reconstructed (for benchmarks)


def _open(video: Path):
    import av

    try:
        container = av.open(str(video))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoError(f"{video}: cannot open as a video ({str(err).strip() or type(err).__name__})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{video}: has no video stream")
    return container


def _video_packets(container, threads: int) -> tuple:
    """The configured video stream of an open container and its readable packets.
    threads: 0 lets FFmpeg pick (one per core, frame + slice threading), 1 decodes in this thread."""
    stream = container.streams.video[0]
    stream.codec_context.thread_count = threads
    stream.codec_context.thread_type = "AUTO" if threads != 1 else "SLICE"
    return stream, _demux(container, stream)


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def _demux(container, stream) -> list:
    """Every packet of the video stream that could be read (a cut file ends early)."""
    import av

    packets = []
    try:
        for packet in container.demux(stream):
            if packet.size:
                packets.append(packet)
    except av.error.FFmpegError:
        pass
    return packets


def _decode(stream, packets: list, wanted: set[int] | None, rank: dict, skip: bool = True
            ) -> tuple[dict, int, bool]:
    """Frames of `wanted` presentation ranks as BGR (none when None: a counting pass), the number of
    frames reconstructed, and whether the decoder reported an error. Without `rank`, a frame's index is
    its place in the decoder's output (presentation order). `skip`: do not reconstruct unwanted
    non-reference frames."""
    import av

    context = stream.codec_context
    kept: dict[int, np.ndarray] = {}
    count, failed = 0, False

    def take(frames) -> None:
        nonlocal count
        for frame in frames:
            count += 1
            index = rank.get(frame.pts, -1) if rank else count - 1
            if wanted is not None and index in wanted:
                kept[index] = upright(frame)

    for packet in packets:
        if skip and rank:
            context.skip_frame = "DEFAULT" if rank.get(packet.pts, -1) in wanted else "NONREF"
        try:
            take(context.decode(packet))
        except av.error.FFmpegError:
            failed = True
    context.skip_frame = "DEFAULT"
    try:
        take(context.decode(None))
    except av.error.FFmpegError:
        failed = True
    return kept, count, failed


def _ranks(packets: list) -> dict:
    """pts -> index in presentation order; empty when some packet has no pts (then decode order is used)."""
    stamps = [p.pts for p in packets]
    if any(s is None for s in stamps) or len(set(stamps)) != len(stamps):
        return {}
    return {stamp: rank for rank, stamp in enumerate(sorted(stamps))}


def read_samples(video: Path, n: int, threads: int | None = None, skip: bool = True) -> Samples:
    """The `n` frames at equal intervals of `video` (BGR), decoding only what they need (`skip`).
    threads: decoder threads (None: this process's share of the CPUs, avemo.parallel.thread_budget)."""
    threads = thread_budget() if threads is None else threads
    container = _open(video)
    with container:
        stream, packets = _video_packets(container, threads)
        declared, fps = int(stream.frames or 0), _fps(stream)
        rank = _ranks(packets)
        if packets and rank:
            wanted = set(sample_indices(len(packets), n))
            kept, decoded, failed = _decode(stream, packets, wanted, rank, skip)
            if not failed and wanted <= set(kept):
                order = sorted(wanted)
                return Samples([kept[i] for i in order], order, fps, len(packets), declared, decoded)
    return _sample_what_decodes(video, n, threads, declared, fps)


def _sample_what_decodes(video: Path, n: int, threads: int, declared: int, fps: float) -> Samples:
    """Fallback for cut or damaged files: count the frames that decode, then decode again and keep the
    samples spread over those."""
    counted = 0
    for attempt in ("count", "keep"):
        container = _open(video)
        with container:
            stream, packets = _video_packets(container, threads)
            wanted = set(sample_indices(counted, n)) if attempt == "keep" else None
            kept, decoded, _ = _decode(stream, packets, wanted, {}, skip=False)
        if attempt == "count":
            counted = decoded
            if not counted:
                raise VideoError(f"{video}: no decodable frames (corrupt or truncated file)")
    if not kept:
        raise VideoError(f"{video}: frames could not be decoded")
    order = sorted(kept)
    return Samples([kept[i] for i in order], order, fps, counted, declared, counted + decoded)


def sample_frames(video: Path, n: int) -> tuple[list[np.ndarray], list[int], float]:
    """Compatibility form of read_samples: (frames, their indices, fps)."""
    samples = read_samples(video, n)
    return samples.frames, samples.indices, samples.fps


# ------------------------------------------------------------------ alternatives, for the benchmark


def opencv_grab(video: Path, n: int, threads: int = 0) -> Samples:
    """The former path: OpenCV decodes every frame (grab) and converts the sampled ones (retrieve)."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise VideoError(f"{video}: cannot open as a video")
    declared, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), capture.get(cv2.CAP_PROP_FPS) or 0.0
    wanted, kept, index = set(sample_indices(declared, n)), {}, 0
    while capture.grab():
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok:
                kept[index] = frame
        index += 1
    capture.release()
    order = sorted(kept)
    return Samples([kept[i] for i in order], order, fps, index, declared, index)


def keyframe_seek(video: Path, n: int, threads: int = 0) -> Samples:
    """Seek to the keyframe before each sample and decode forward to it (pays off on long GOP-rich files)."""
    container = _open(video)
    with container:
        stream, packets = _video_packets(container, threads)
        declared, fps = int(stream.frames or 0), _fps(stream)
        stamps = sorted(p.pts for p in packets)
        kept, decoded = {}, 0
        for index in sorted(set(sample_indices(len(stamps), n))):
            container.seek(stamps[index], stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                decoded += 1
                if frame.pts is not None and frame.pts >= stamps[index]:
                    kept[index] = upright(frame)
                    break
    order = sorted(kept)
    return Samples([kept[i] for i in order], order, fps, len(stamps), declared, decoded)


METHODS = {
    "sampled": lambda video, n, threads=0: read_samples(video, n, threads, skip=True),
    "all": lambda video, n, threads=0: read_samples(video, n, threads, skip=False),
    "seek": keyframe_seek,
    "opencv": opencv_grab,
}
