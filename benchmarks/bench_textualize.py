"""Benchmark `cer textualize` on this machine and write benchmarks/results/bench_textualize.json.

    python -m benchmarks.bench_textualize [--clips 16] [--long-minutes 30]

Measures, on synthetic clips (espeak-ng speech muxed into ffmpeg test-pattern video, MELD-like
lengths of 3-6 s): wall time per clip and per stage, the real-time factor of the whole pipeline
without the AU stage (py-feat needs a GPU to be fair, and its weights are not available offline),
the speed-up of 2 workers over 1, the time of a fully cached re-run relative to the first run,
and the peak memory (RSS of the whole process tree) while textualizing one long video.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._process import run_measured

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "I can't believe you did that again, honestly.",
    "Well, that is the best news I have heard all week!",
    "Could you please pass me the remote control?",
    "No, no, no. This is not what we agreed on at all.",
    "Oh my God, you scared me half to death.",
    "I guess we could try again tomorrow morning if you want.",
]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_clips(folder: Path, count: int) -> float:
    """`count` talking test-pattern clips; returns their total duration in seconds."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i in range(count):
        wav = folder / f"s{i}.wav"
        sh(
            "espeak-ng",
            "-s",
            str(130 + 10 * (i % 5)),
            "-p",
            str(20 + 10 * (i % 6)),
            "-w",
            str(wav),
            SENTENCES[i % len(SENTENCES)],
        )
        total += sf.info(str(wav)).duration
        sh(
            "ffmpeg",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-i",
            str(wav),
            "-shortest",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            str(folder / f"clip_{i:03d}.mp4"),
        )
        wav.unlink()
    return total


def make_long_video(path: Path, minutes: float) -> None:
    speech = path.with_suffix(".wav")
    sh(
        "espeak-ng",
        "-s",
        "150",
        "-w",
        str(speech),
        " ".join(SENTENCES) + " And then there was a long pause.",
    )
    sh(
        "ffmpeg",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size=320x240:rate=25:duration={minutes * 60}",
        "-stream_loop",
        "-1",
        "-i",
        str(speech),
        "-t",
        str(minutes * 60),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(path),
    )
    speech.unlink()


def run_cli(args: list[str]) -> tuple[float, float, str]:
    """Run `cer textualize ...`; return (wall seconds, peak RSS of the process tree in MB, stderr)."""
    return run_measured([sys.executable, "-m", "cer", "textualize", *args, "--progress", "false"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--long-minutes", type=float, default=30.0)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "bench_textualize.json")
    )
    args = parser.parse_args()
    from textualize.speech import bundled_whisper_model

    model = bundled_whisper_model()
    work = Path(tempfile.mkdtemp(prefix="cer-bench-"))
    common = ["--whisper-model", model, "--language", "en", "--face", "off"]
    result: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_at_start": os.getloadavg(),
        }
    }
    if args.clips:
        result.update(bench_clips(work, args.clips, common))
    if args.long_minutes > 0:
        result["long_video"] = bench_long(work, args.long_minutes, common)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def bench_clips(work: Path, count: int, common: list[str]) -> dict:
    audio_seconds = make_clips(work / "clips", count)

    def timed(workers: int, cache: str, out: str) -> dict:
        wall, peak, _ = run_cli(
            [
                str(work / "clips"),
                str(work / out),
                "--cache-dir",
                str(work / cache),
                "--workers",
                str(workers),
                *common,
            ]
        )
        run = json.loads((work / out / "run.json").read_text())
        return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak), "summary": run["summary"]}

    one = timed(1, "cache1", "out1")
    two = timed(2, "cache2", "out2")
    cached = timed(2, "cache2", "out3")
    stage = one["summary"]["stage_seconds"]
    return {
        "clips": count,
        "clip_audio_seconds_total": round(audio_seconds, 2),
        "stages": "media + audio decode + prosody (openSMILE) + transcript (faster-whisper tiny.en int8); no AU stage",
        "one_worker": one,
        "two_workers": two,
        "cached_rerun_two_workers": cached,
        "wall_per_clip_s": round(one["wall_s"] / count, 3),
        "stage_seconds_per_clip": {k: round(v / count, 4) for k, v in stage.items()},
        "real_time_factor_one_worker": round(one["wall_s"] / audio_seconds, 3),
        "real_time_factor_two_workers": round(two["wall_s"] / audio_seconds, 3),
        "speedup_two_over_one": round(one["wall_s"] / two["wall_s"], 2),
        "cached_rerun_fraction_of_first": round(cached["wall_s"] / two["wall_s"], 3),
    }


def bench_long(work: Path, long_minutes: float, common: list[str]) -> dict:
    """Peak memory on a short and a long video: flat means the two peaks are close."""
    long_results = {}
    for minutes in sorted({min(3.0, long_minutes), long_minutes}):
        path = work / f"long_{minutes:g}min.mp4"
        make_long_video(path, minutes)
        wall, peak, _ = run_cli(
            [
                str(path),
                str(work / f"long{minutes:g}"),
                "--cache-dir",
                str(work / f"cache-long{minutes:g}"),
                "--workers",
                "1",
                *common,
            ]
        )
        long_results[f"{minutes:g}_min"] = {
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(peak),
            "real_time_factor": round(wall / (minutes * 60), 3),
        }
    return long_results


if __name__ == "__main__":
    main()
