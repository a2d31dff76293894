"""Benchmark `cer textualize --engine ray` against the local engine; writes benchmarks/results/bench_ray.json.

    python -m benchmarks.bench_ray [--clips 16]     # from the repository root

Same synthetic clips as bench_textualize.py (espeak-ng speech muxed into test-pattern video, 3-6 s
each), the same stages (probe, audio decode, openSMILE prosody, faster-whisper tiny.en; no AU
stage, py-feat weights are not available offline), a cold cache for every run. Measures:

- end to end through the CLI: the local engine (worker processes, all cores) and the Ray engine
  starting its own local Ray on the same cores, each in a fresh process;
- Ray start-up alone: ``ray.init`` on those cores until a first task has returned;
- within one process where Ray is already up (as on a cluster): both engines' wall time, so the
  difference is the engine's own overhead (actor start, model load per actor, scheduling).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.bench_textualize import make_clips, run_cli

ROOT = Path(__file__).resolve().parents[1]
STARTUP = (
    "import time; t = time.perf_counter(); import ray; "
    "ray.init(address='local', num_cpus={cores}, include_dashboard=False, logging_level='WARNING'); "
    "ray.get(ray.remote(lambda: 1).remote()); print(time.perf_counter() - t)"
)


def ray_startup_seconds(cores: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", STARTUP.format(cores=cores)],
        check=True,
        capture_output=True,
        text=True,
    )
    return round(float(out.stdout.split()[-1]), 2)


def cli_run(clips: Path, work: Path, name: str, common: list[str]) -> dict:
    wall, peak, _ = run_cli(
        [str(clips), str(work / name), "--cache-dir", str(work / f"cache-{name}"), *common]
    )
    summary = json.loads((work / name / "run.json").read_text())["summary"]
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak), "summary": summary}


def in_process_runs(clips: Path, work: Path, cores: int, model: str) -> dict:
    """Both engines inside this process, with a Ray started beforehand (and not timed)."""
    import ray

    from textualize.config import TextualizeConfig
    from textualize.pipeline import textualize

    base = TextualizeConfig(
        whisper_model=model, language="en", face="off", progress=False, workers=cores
    )
    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level="WARNING")
    out = {}
    try:
        for engine in ("local", "ray"):
            cfg = replace(base, engine=engine, cache_dir=str(work / f"cache-warm-{engine}"))
            started = time.perf_counter()
            summary = textualize(clips, work / f"warm-{engine}", cfg)
            out[engine] = {
                "wall_s": round(time.perf_counter() - started, 2),
                "computed": summary.computed,
            }
    finally:
        ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_ray.json"))
    args = parser.parse_args()
    from textualize.speech import bundled_whisper_model

    model, cores = bundled_whisper_model(), os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="cer-bench-ray-"))
    audio_seconds = make_clips(work / "clips", args.clips)
    common = [
        "--whisper-model",
        model,
        "--language",
        "en",
        "--face",
        "off",
        "--workers",
        str(cores),
    ]
    result: dict = {
        "machine": {
            "cores": cores,
            "python": sys.version.split()[0],
            "load_average_at_start": os.getloadavg(),
        },
        "clips": args.clips,
        "clip_audio_seconds_total": round(audio_seconds, 2),
        "stages": "media + audio decode + prosody (openSMILE) + transcript (faster-whisper tiny.en int8); no AU stage",
    }
    result["cli_local"] = cli_run(work / "clips", work, "local", common)
    result["cli_ray_own_cluster"] = cli_run(
        work / "clips", work, "ray", [*common, "--engine", "ray"]
    )
    result["ray_startup_s"] = [ray_startup_seconds(cores) for _ in range(2)]
    result["ray_already_running"] = in_process_runs(work / "clips", work, cores, model)
    local, on_ray = result["cli_local"]["wall_s"], result["cli_ray_own_cluster"]["wall_s"]
    warm = result["ray_already_running"]
    result["ray_over_local_cli"] = round(on_ray / local, 2)
    result["ray_over_local_ray_already_running"] = round(
        warm["ray"]["wall_s"] / warm["local"]["wall_s"], 2
    )
    result["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
