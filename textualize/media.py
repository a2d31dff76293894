"""Decode a media file once: probe it, stream sampled video frames, read the audio as 16 kHz mono.

Everything goes through PyAV (FFmpeg's libraries inside the wheel, no system ffmpeg needed).
Frames are yielded one at a time and never written to disk, so memory stays flat for long videos;
only the sampled frames are converted to RGB arrays.

Partly damaged files give what they still hold: a packet that fails to decode is skipped, a
demuxer error is stepped over by seeking past it, and audio lost to damage or a cut-off end is
filled with silence so that times stay true, and counted (``DecodedAudio.lost_seconds``).
Only a stream of which nothing at all decodes is an error.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from textualize.records import MediaInfo, VideoFrame

SAMPLE_RATE = 16_000  # Hz; what Whisper, openSMILE's eGeMAPS and wav2vec2-style models expect
HASH_CHUNK = 1 << 22  # bytes read per step while hashing (4 MiB)
GAP_TOLERANCE = 0.005  # s; a jump in audio timestamps beyond this is audio lost to damage
TAIL_TOLERANCE = 0.25  # s; audio ending this long before its stream's stated end was cut off
RESYNC_STEP = 1.0  # s skipped past the last good packet per try after a demuxer error
MAX_RESYNCS = 20  # demuxer errors stepped over before the rest of the stream is given up
SELECT_SECONDS = 10.0  # s decoded from each of several audio streams to find one with signal
SILENCE_RMS = 1e-3  # -60 dBFS; a stream quieter than this over SELECT_SECONDS counts as silent

log = logging.getLogger(__name__)


#: Bumped when MediaInfo gains a field that probe fills (2: the chosen audio stream).
MEDIA_FORMAT = 2


def identity() -> dict:
    """What the media stage's cached MediaInfo depends on: PyAV (FFmpeg) and the record format."""
    from importlib import metadata

    return {"av": metadata.version("av"), "format": MEDIA_FORMAT}


class MediaError(RuntimeError):
    """The file cannot be used as media; the message says why (not media, corrupt, empty, ...)."""


@dataclass(frozen=True)
class DecodedAudio:
    """The audio of a span, which stream it came from, and how much of it damage took."""

    samples: np.ndarray  # float32 mono; lost spans are zeros, so times match the file's
    stream: int | None  # container-wide stream index; None when the file has no audio
    lost_seconds: float = 0.0  # undecodable or cut-off audio within the span


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
    """Read the container's streams and the duration of the selected span.

    Nothing is decoded, except the first seconds of each audio stream when there are several,
    to pick the one with signal (``choose_audio_stream``).
    """
    if start is not None and end is not None and end <= start:
        raise MediaError(f"empty time span: end {end}s is not after start {start}s")
    with _open(path) as container:
        video = next((s for s in container.streams.video), None)
        audio = choose_audio_stream(container, path)
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
            audio_stream=audio.index if audio is not None else None,
        )


def choose_audio_stream(container, path: str | Path):
    """The audio stream to use: the default one unless it is silent, else the first with signal.

    With a single audio stream nothing is decoded. With several (a dub plus a silent track, a
    commentary), the first ``SELECT_SECONDS`` of each are decoded once to measure their level.
    """
    import av

    streams = list(container.streams.audio)
    if len(streams) <= 1:
        return streams[0] if streams else None
    default = av.stream.Disposition.default
    ranked = sorted(streams, key=lambda s: (not s.disposition & default, s.index))
    with _open(path) as scan:
        levels = _levels(scan, [scan.streams[s.index] for s in ranked])
    return next((s for s in ranked if levels[s.index] >= SILENCE_RMS), ranked[0])


def _levels(container, streams) -> dict[int, float]:
    """RMS of the first SELECT_SECONDS of each stream (0 for one that does not decode)."""
    import av

    squares = {s.index: 0.0 for s in streams}
    counts = {s.index: 0 for s in streams}
    resamplers = {
        s.index: av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) for s in streams
    }
    pending = set(squares)
    for frame, stream in _frames(container, streams, []):
        if stream.index not in pending:
            continue
        for out in resamplers[stream.index].resample(frame):
            samples = out.to_ndarray().reshape(-1).astype(np.float64)
            squares[stream.index] += float(samples @ samples)
            counts[stream.index] += samples.size
        if counts[stream.index] >= SELECT_SECONDS * SAMPLE_RATE:
            pending.discard(stream.index)
            if not pending:
                break
    return {i: (squares[i] / counts[i]) ** 0.5 if counts[i] else 0.0 for i in squares}


def _seek(container, stream, start: float, backward: bool = True) -> None:
    if start > 0 and stream.time_base:
        container.seek(int(Fraction(start) / stream.time_base), stream=stream, backward=backward)


def _packets(container, stream):
    """Demux ``stream``'s packets; after a demuxer error, seek past it and read on."""
    import av

    last = 0  # pts of the last good packet, in the stream's time base
    tries = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.FFmpegError, OSError) as err:  # OSError: a bad sector, a dropped mount
            tries += 1
            if tries > MAX_RESYNCS or not stream.time_base:
                log.warning("giving up on the rest of stream %d after %s", stream.index, err)
                return
            resume = float(last * stream.time_base) + tries * RESYNC_STEP
            try:
                _seek(container, stream, resume, backward=False)
            except (av.FFmpegError, OSError):
                return
            packets = container.demux(stream)
            continue
        if packet.pts is not None:
            if tries and packet.pts <= last:  # a seek landed before the damage: skip it again
                continue
            last = packet.pts
        yield packet


def _frames(container, streams, errors: list[Exception]):
    """Decoded (frame, stream) pairs; a packet that fails to decode is skipped into ``errors``."""
    import av

    by_index = {s.index: s for s in streams}
    packets = _packets(container, streams[0]) if len(streams) == 1 else container.demux(*streams)
    for packet in packets:
        try:
            frames = packet.decode()
        except av.FFmpegError as err:
            errors.append(err)
            continue
        for frame in frames:
            yield frame, by_index[packet.stream.index]


def iter_frames(
    path: str | Path, fps: float, start: float | None = None, end: float | None = None
) -> Iterator[VideoFrame]:
    """Yield frames sampled at ``fps`` per second (or every frame if the video has fewer).

    Times are seconds from ``start``. A frame is taken at the first decoded picture at or after
    each sampling instant, so the rate is exact for any source frame rate. Pictures that fail to
    decode are skipped, so a damaged stretch is a gap in the times.
    """
    with _open(path) as container:
        stream = next((s for s in container.streams.video), None)
        if stream is None:
            return
        stream.thread_type = "AUTO"
        begin = start or 0.0
        _seek(container, stream, begin)
        step = 1.0 / fps
        next_time = begin
        errors: list[Exception] = []
        decoded = 0
        for frame, _ in _frames(container, [stream], errors):
            decoded += 1
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base)
            if end is not None and t >= end:
                break
            if t + 1e-6 < next_time:
                continue
            yield VideoFrame(time=round(t - begin, 6), image=frame.to_ndarray(format="rgb24"))
            next_time = max(next_time + step, t + step / 2)
        if errors and not decoded:
            raise MediaError(f"no video could be decoded ({_damage(errors)})") from errors[0]
        if errors:
            log.warning("%s: skipped %d damaged video packets", path, len(errors))


def read_audio(
    path: str | Path,
    start: float | None = None,
    end: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    stream: int | None = None,
) -> DecodedAudio:
    """The audio of the span as float32 mono at ``sample_rate``, and how much of it was lost.

    ``stream`` is a container-wide stream index; by default the one ``probe`` chooses. Memory is
    the output array only (64 KB per second at 16 kHz); packets are resampled as they are
    decoded. Stretches lost to damage, and a cut-off end, become silence of their true length.
    """
    import av

    with _open(path) as container:
        if stream is None:
            chosen = choose_audio_stream(container, path)
        else:
            chosen = container.streams[stream]
            if chosen.type != "audio":
                raise MediaError(f"stream {stream} is {chosen.type}, not audio")
        if chosen is None:
            return DecodedAudio(np.zeros(0, dtype=np.float32), None)
        index = chosen.index  # read now: a stream must not be touched once its file is closed
        begin = start or 0.0
        _seek(container, chosen, begin)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        errors: list[Exception] = []
        first_time: float | None = None
        expected: int | None = None  # pts (1/sample_rate) where the next output should start
        gap_samples = 0
        tolerance = GAP_TOLERANCE * sample_rate
        for frame, _ in _frames(container, [chosen], errors):
            if frame.pts is not None and first_time is None:
                first_time = float(frame.pts * chosen.time_base)
                head_errors = len(errors)
            for out in resampler.resample(frame):
                if out.pts is not None and expected is not None and out.pts - expected > tolerance:
                    gap_samples += out.pts - expected
                    chunks.append(np.zeros(out.pts - expected, np.float32))
                expected = (out.pts if out.pts is not None else expected or 0) + out.samples
                chunks.append(out.to_ndarray().reshape(-1))
            if (
                end is not None
                and frame.pts is not None
                and float(frame.pts * chosen.time_base) >= end
            ):
                break
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
        stated_end = _stated_end(container, chosen)
        if first_time is None and errors:
            raise MediaError(
                f"no audio could be decoded from stream {index} ({_damage(errors)})"
            ) from errors[0]
        if first_time is None and (stated_end or 0.0) - begin > TAIL_TOLERANCE:
            raise MediaError(
                f"no audio could be decoded from stream {index} "
                f"(the file ends before its first audio packet)"
            )
    audio = (
        np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    )
    lost = gap_samples / sample_rate
    # Trim to the exact span: decoding starts at the packet before `start`.
    offset = round(((first_time or 0.0) - begin) * sample_rate)
    if offset < 0:
        audio = audio[-offset:]
    elif offset > 0:
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
        if first_time is not None and head_errors and offset > tolerance:
            lost += offset / sample_rate  # the first packets were damaged
    if stated_end is not None and first_time is not None:
        want = stated_end if end is None else min(end, stated_end)
        tail = want - begin - len(audio) / sample_rate
        if tail > TAIL_TOLERANCE:  # the file ends before its stream says it does
            audio = np.concatenate([audio, np.zeros(round(tail * sample_rate), np.float32)])
            lost += tail
    if end is not None:
        audio = audio[: round((end - begin) * sample_rate)]
    lost = round(lost, 3)
    if lost and len(audio) / sample_rate - lost < GAP_TOLERANCE:
        raise MediaError(
            f"no audio could be decoded from stream {index} in this span "
            f"({lost:.2f} s damaged or cut off)"
        )
    if lost:
        log.warning(
            "%s: %.2f s of audio could not be decoded (damaged or cut-off file), "
            "filled with silence",
            path,
            lost,
        )
    return DecodedAudio(audio, index, lost)


def decode_audio(
    path: str | Path,
    start: float | None = None,
    end: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    stream: int | None = None,
) -> np.ndarray:
    """The audio of the span as float32 mono at ``sample_rate``; empty array if there is none.

    ``read_audio`` without the account of what was lost.
    """
    return read_audio(path, start, end, sample_rate, stream).samples


def _stated_end(container, stream) -> float | None:
    """Where the stream says it ends, in its own timestamps' seconds (None if it does not say)."""
    tb = stream.time_base
    first = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if stream.duration and tb:
        return first + float(stream.duration * tb)
    tag = stream.metadata.get("DURATION")  # Matroska keeps each track's length as a tag
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return first + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            pass
    if container.duration:
        return (container.start_time or 0) / 1_000_000 + container.duration / 1_000_000
    return None


def _damage(errors: list[Exception]) -> str:
    return f"{len(errors)} damaged packets; first: {errors[0]}"
