"""Make small real media files with ffmpeg for tests: tones, test patterns, speech, broken files."""

from __future__ import annotations

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
