"""Make small real media files with ffmpeg for tests: tones, test patterns, speech, broken files."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def video(
    path: Path, seconds: float = 2.0, audio: Path | str | None = "tone", size: str = "160x120"
) -> Path:
    """A test-pattern video; audio: "tone", "silence", None (no audio stream) or a WAV to mux in."""
    inputs = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=10:duration={seconds}"]
    if audio == "tone":
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}"]
    elif audio == "silence":
        inputs += ["-f", "lavfi", "-i", f"anullsrc=r=16000:cl=mono:d={seconds}"]
    elif audio is not None:
        inputs += ["-i", str(audio)]
    codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    codecs += ["-c:a", "aac", "-shortest"] if audio is not None else ["-an"]
    ffmpeg(*inputs, *codecs, str(path))
    return path


def truncated(source: Path, path: Path, fraction: float = 0.4) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def movie(path: Path, seconds: float = 10.0, audio_codec: str = "aac", *flags: str) -> Path:
    """Test pattern plus a 220 Hz tone encoded with ``audio_codec``; flags go to the muxer."""
    ffmpeg(
        *["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}"],
        *["-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}"],
        *["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
        *["-c:a", audio_codec, "-shortest", *flags, str(path)],
    )
    return path


def tone(path: Path, seconds: float = 10.0, frequency: float = 220) -> Path:
    """A 16 kHz audio-only tone; the codec follows the extension (.wav PCM, .flac FLAC, ...)."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={frequency}:duration={seconds}",
        "-ar",
        "16000",
        str(path),
    )
    return path


def scrambled(source: Path, path: Path, size: int = 4096, at: float = 0.5, seed: int = 0) -> Path:
    """A copy with ``size`` bytes at fraction ``at`` of the file overwritten by random bytes."""
    data = bytearray(source.read_bytes())
    offset = int(len(data) * at)
    data[offset : offset + size] = random.Random(seed).randbytes(size)
    path.write_bytes(bytes(data))
    return path


def several_audio_streams(path: Path, *tracks: Path | str, default: int | None = None) -> Path:
    """A video with one audio stream per track ("silence", "tone" or a WAV), in order.

    ``default`` marks that audio stream (0-based among the audio streams) as the default one;
    otherwise no stream is marked.
    """
    seconds = 3.0
    inputs = ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}"]
    for track in tracks:
        if track == "silence":
            inputs += ["-f", "lavfi", "-i", f"anullsrc=r=16000:cl=mono:d={seconds}"]
        elif track == "tone":
            inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
        else:
            inputs += ["-i", str(track)]
    maps = [arg for i in range(len(tracks) + 1) for arg in ("-map", str(i))]
    marks = [f"-disposition:a:{i}" for i in range(len(tracks))]
    flags = [a for i, m in enumerate(marks) for a in (m, "default" if i == default else "0")]
    ffmpeg(
        *inputs,
        *maps,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "libopus",
        *flags,
        "-t",
        str(seconds),
        str(path),
    )
    return path
