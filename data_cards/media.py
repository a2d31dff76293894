"""Cheap checks that a clip decodes (PyAV) and frame-accurate cutting of segments (ffmpeg).

The decode check opens the container and decodes one video frame (or one audio frame when there
is no video), which finds missing, truncated and garbage files without reading whole clips.
Results are cached in ``clip_checks.jsonl`` keyed by path, size and modification time, so a
re-run only opens files that are new or changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from data_cards.errors import MediaToolError

CHECKS_FILE = "clip_checks.jsonl"
#: Encoder settings for cut segments: re-encoding makes cuts frame-accurate (stream copy would
#: snap the start to the previous keyframe).
VIDEO_CODEC = "libx264"
VIDEO_CRF = 18
VIDEO_PRESET = "veryfast"
AUDIO_CODEC = "aac"
AUDIO_BITRATE = "128k"


@dataclass(frozen=True)
class ClipProbe:
    """What one cheap look at a media file found."""

    ok: bool
    reason: str = ""  # empty when ok; otherwise what went wrong, for the failures log
    has_video: bool = False
    has_audio: bool = False
    duration: float | None = None  # seconds, from the container


def probe_clip(path: str | Path) -> ClipProbe:
    """Open ``path`` with PyAV and decode its first frame; never raises for a bad file."""
    import av

    path = Path(path)
    if not path.is_file():
        return ClipProbe(ok=False, reason="file not found")
    if path.stat().st_size == 0:
        return ClipProbe(ok=False, reason="file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            videos = container.streams.video
            audios = container.streams.audio
            duration = container.duration / 1_000_000 if container.duration else None
            if not videos and not audios:
                return ClipProbe(ok=False, reason="container has no video or audio stream")
            stream = videos[0] if videos else audios[0]
            for _frame in container.decode(stream):
                break
            else:
                return ClipProbe(
                    ok=False,
                    reason="no frame could be decoded",
                    has_video=bool(videos),
                    has_audio=bool(audios),
                    duration=duration,
                )
    except (av.error.FFmpegError, ValueError, OSError) as err:
        return ClipProbe(ok=False, reason=f"cannot decode: {err}")
    return ClipProbe(ok=True, has_video=bool(videos), has_audio=bool(audios), duration=duration)


class ProbeCache:
    """Decode-check results kept between runs; a changed file (size or mtime) is checked again."""

    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, dict] = {}
        self.reused = 0
        self.checked = 0
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        entry = json.loads(line)
                        self._entries[entry["file"]] = entry

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def probe(self, path: Path) -> ClipProbe:
        key = str(path.resolve())
        stamp = self._stamp(path)
        entry = self._entries.get(key)
        if stamp is not None and entry and (entry["size"], entry["mtime_ns"]) == stamp:
            self.reused += 1
            return ClipProbe(**entry["probe"])
        result = probe_clip(path)
        self.checked += 1
        if stamp is not None:  # a missing file is not cached: it may appear before the next run
            entry = {"file": key, "size": stamp[0], "mtime_ns": stamp[1], "probe": asdict(result)}
            self._entries[key] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:  # append: survives interrupts
                handle.write(json.dumps(entry) + "\n")
        return result


def require_ffmpeg() -> str:
    """Path of the ffmpeg executable, or an error that says how to install it."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaToolError(
            "ffmpeg is needed to cut segments but was not found on PATH; install it "
            "(apt-get install ffmpeg, brew install ffmpeg, conda install ffmpeg) and re-run"
        )
    return exe


def cut_segment(source: Path, target: Path, start: float, end: float) -> None:
    """Re-encode ``source[start:end]`` (seconds) into ``target`` with its first audio track.

    Written to a temporary name and renamed, so an existing ``target`` is always a finished cut.
    """
    exe = require_ffmpeg()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.part{target.suffix}")
    command = [
        exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-ss", f"{start:.6f}", "-i", str(source), "-t", f"{end - start:.6f}",
        "-map", "0:v:0?", "-map", "0:a:0?",
        "-c:v", VIDEO_CODEC, "-crf", str(VIDEO_CRF), "-preset", VIDEO_PRESET, "-pix_fmt", "yuv420p",
        "-c:a", AUDIO_CODEC, "-b:a", AUDIO_BITRATE,
        "-movflags", "+faststart", str(tmp),
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as err:
        tmp.unlink(missing_ok=True)
        detail = (err.stderr or "").strip().splitlines()[-1:] or ["no message"]
        raise MediaToolError(
            f"ffmpeg could not cut {source} [{start:.3f}s, {end:.3f}s]: {detail[0]}"
        ) from err
    os.replace(tmp, target)
