"""Decode a media file once: probe it, stream sampled video frames, read the audio as 16 kHz mono.

Everything goes through PyAV (FFmpeg's libraries inside the wheel, no system ffmpeg needed).
Frames are yielded one at a time and never written to disk, so memory stays flat for long videos;
only the sampled frames are converted to RGB arrays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from textualize.records import MediaInfo, VideoFrame

SAMPLE_RATE = 16_000  # Hz; what Whisper, openSMILE's eGeMAPS and wav2vec2-style models expect
HASH_CHUNK = 1 << 22  # bytes read per step while hashing (4 MiB)


class MediaError(RuntimeError):
    """The file cannot be used as media; the message says why (not media, corrupt, empty, ...)."""


def content_hash(path: str | Path) -> str:
    """BLAKE2b of the file's bytes: the cache follows content, not names or locations."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise MediaError(f"not a readable media file ({err.__class__.__name__}: {err})") from err


def _span(container, start: float | None, end: float | None) -> tuple[float, float]:
    total = float(container.duration) / 1_000_000 if container.duration else 0.0
    if not total:  # some containers only know their streams' durations
        for stream in container.streams:
            if stream.duration and stream.time_base:
                total = max(total, float(stream.duration * stream.time_base))
    begin = max(0.0, start or 0.0)
    stop = total if end is None else min(end, total) if total else end
    if start is not None and total and start >= total:
        raise MediaError(f"start {start:.3f}s is past the end of the file ({total:.3f}s)")
    return begin, stop


def probe(path: str | Path, start: float | None = None, end: float | None = None) -> MediaInfo:
    """Read the container's streams and the duration of the selected span without decoding."""
    if start is not None and end is not None and end <= start:
        raise MediaError(f"empty time span: end {end}s is not after start {start}s")
    with _open(path) as container:
        video = next((s for s in container.streams.video), None)
        audio = next((s for s in container.streams.audio), None)
        if video is None and audio is None:
            raise MediaError("no audio or video stream (not a media file)")
        begin, stop = _span(container, start, end)
        duration = max(0.0, stop - begin)
        if duration <= 0:
            raise MediaError("zero-length media (duration 0 s)")
        rate = video.average_rate if video is not None else None
        return MediaInfo(
            duration=round(duration, 6),
            has_video=video is not None,
            has_audio=audio is not None,
            video_fps=float(rate) if rate else None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
        )


def _seek(container, stream, start: float) -> None:
    if start > 0 and stream.time_base:
        container.seek(int(Fraction(start) / stream.time_base), stream=stream, backward=True)


def iter_frames(
    path: str | Path, fps: float, start: float | None = None, end: float | None = None
) -> Iterator[VideoFrame]:
    """Yield frames sampled at ``fps`` per second (or every frame if the video has fewer).

    Times are seconds from ``start``. A frame is taken at the first decoded picture at or after
    each sampling instant, so the rate is exact for any source frame rate.
    """
    import av

    with _open(path) as container:
        stream = next((s for s in container.streams.video), None)
        if stream is None:
            return
        stream.thread_type = "AUTO"
        begin = start or 0.0
        _seek(container, stream, begin)
        step = 1.0 / fps
        next_time = begin
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                if end is not None and t >= end:
                    break
                if t + 1e-6 < next_time:
                    continue
                yield VideoFrame(time=round(t - begin, 6), image=frame.to_ndarray(format="rgb24"))
                next_time = max(next_time + step, t + step / 2)
        except av.FFmpegError as err:
            raise MediaError(f"video stream is corrupt near {next_time:.2f}s: {err}") from err


def decode_audio(
    path: str | Path,
    start: float | None = None,
    end: float | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """The audio of the span as float32 mono at ``sample_rate``; empty array if there is none.

    Memory is the output array only (64 KB per second at 16 kHz); packets are resampled as
    they are decoded.
    """
    import av

    with _open(path) as container:
        stream = next((s for s in container.streams.audio), None)
        if stream is None:
            return np.zeros(0, dtype=np.float32)
        begin = start or 0.0
        _seek(container, stream, begin)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and first_time is None:
                    first_time = float(frame.pts * stream.time_base)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                if end is not None and frame.pts is not None:
                    if float(frame.pts * stream.time_base) >= end:
                        break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as err:
            raise MediaError(f"audio stream is corrupt: {err}") from err
    audio = (
        np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    )
    # Trim to the exact span: decoding starts at the packet before `start`.
    offset = int(round(((first_time or 0.0) - begin) * sample_rate))
    if offset < 0:
        audio = audio[-offset:]
    elif offset > 0:
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    if end is not None:
        audio = audio[: int(round((end - begin) * sample_rate))]
    return audio
