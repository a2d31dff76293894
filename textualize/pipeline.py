"""Run textualization over many clips: extract (parallel, cached), describe, render, write.

``textualize(source, output_dir, config)`` is the library entry point behind ``cer textualize``.
Extraction runs on an engine: worker processes on this machine (``--engine local``,
textualize/local_engine.py), each loading its models once, or a Ray cluster (``--engine ray``,
textualize/ray_engine.py); everything else (cache fast path, rendering, writing) is shared.
Results are cached per clip and stage, so a killed run resumes where it stopped and a re-render
(other template, modality subset or windows) reads the cache only. Outputs: ``prompts.parquet``,
``prompts.jsonl``, ``failures.jsonl``, ``run.json`` (configuration, versions, counts, timings,
the digest of every other file) and ``textualizer.json`` (the fitted prosody reference, labels
and template; textualize/textualizer.py), which ``cfg.reference`` reads back to render new clips
exactly as the training clips.

Every input is checked before anything is written; the output folder is then locked for the run
and replaced as one set at the end (textualize/output_folder.py).
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from cer.config import to_mapping
from textualize import cache as cache_module
from textualize.cache import StageCache
from textualize.config import TextualizeConfig
from textualize.extract import ExtractionPlan, plan_extraction, read_cached
from textualize.inputs import discover, is_text_only
from textualize.output_folder import RUN_FILE, check_output, digests, locked, replaced_whole
from textualize.prompts import PromptRenderer
from textualize.records import (
    ABSENT,
    DISABLED,
    FAILED,
    MODALITIES,
    NO_STREAM,
    OK,
    UNAVAILABLE,
    Clip,
    ModalityStatus,
)
from textualize.render import is_gap, unit_row
from textualize.textualizer import FILE_NAME as TEXTUALIZER_FILE
from textualize.textualizer import (
    extraction_identity,
    fit_textualizer,
    load_textualizer,
    rendering_config,
    rendering_notes,
    with_new_speakers,
)
from textualize.unit_cache import UnitStore
from textualize.units import UnitFeatures

log = logging.getLogger(__name__)

#: Why a text-only clip (a manifest row without media) has no face, voice or Whisper words.
TEXT_ONLY_REASON = "text-only row: no clip"
#: Every status a modality can have, in the order run.json lists their counts.
STATUSES = (OK, ABSENT, NO_STREAM, UNAVAILABLE, DISABLED, FAILED)
PACKAGES = (
    "av",
    "opensmile",
    "faster-whisper",
    "ctranslate2",
    "openai-whisper",
    "py-feat",
    "torch",
    "transformers",
    "jinja2",
    "pandas",
    "pyarrow",
)


@dataclass(frozen=True)
class RunSummary:
    clips: int
    units: int
    computed: int  # clips with at least one stage computed in this run
    cached: int  # clips read entirely from the cache
    failed: int  # clips that could not be read at all
    modality_failures: int  # (clip, modality) pairs that failed
    gaps: int  # (clip, modality) pairs missing for any reason (for --strict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    text_only: int = 0  # clips without media, rendered from their gold text and context
    skipped: int = 0  # source entries that are not clips (hidden, FIFO, dangling link...)
    # modality -> clips per status, every status named (zeros too); reasons in failures.jsonl
    status_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    output_dir: str = ""

    def exit_code(self, strict: bool) -> int:
        if self.failed or self.modality_failures:
            return 1
        return 1 if strict and self.gaps else 0


def extract_units(
    clips: list[Clip], cfg: TextualizeConfig, plan: ExtractionPlan
) -> Iterator[list[UnitFeatures]]:
    """Units of every clip, in completion order, computed by the engine ``cfg.engine`` names.

    Clips whose every stage is already cached are read here, in the main process: a re-run (or
    a re-render) starts no worker and no Ray, and loads no model; a clip whose units are stored
    (``textualize.unit_cache``) is one small read. A clip whose content hash is
    not remembered yet (a cold cache, a new or rewritten file) goes straight to the engine, so
    the main process neither hashes nor probes it before the workers start. Text-only clips (no
    media) never reach an extractor.
    """
    for clip in clips:
        if is_text_only(clip):
            yield [text_only_unit(clip)]
    todo = [clip for clip in clips if not is_text_only(clip)]
    if todo and not cfg.force:
        cache, media, todo = StageCache(cfg.cache_dir), todo, []
        store = UnitStore(cfg, plan, cache)
        for clip in media:
            units = store.load(clip)
            if units is not None:
                yield units
                continue
            if not _maybe_cached(clip, cache):
                todo.append(clip)
                continue
            desc = read_cached(clip, cfg, plan, cache)
            if desc.uncached:
                todo.append(clip)
            else:
                yield store.units_of(desc)
    if not todo:
        return
    if cfg.engine == "ray":
        from textualize.ray_engine import compute_units
    else:
        from textualize.local_engine import compute_units
    yield from compute_units(todo, cfg, plan)


def _maybe_cached(clip: Clip, cache: StageCache) -> bool:
    """False when the cache cannot hold this clip yet: its file's hash is not remembered."""
    try:
        return cache.known_hash(clip.path) is not None
    except OSError:
        return True  # read_cached records why the file cannot be read, without a worker


def text_only_unit(clip: Clip) -> UnitFeatures:
    """The one unit of a clip without media: no video and no audio stream, said as such."""
    status = {m: ModalityStatus(NO_STREAM, TEXT_ONLY_REASON) for m in MODALITIES}
    return UnitFeatures(clip, clip.clip_id, clip.start or 0.0, clip.end or 0.0, status)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _write_outputs(rows: list[dict], failures: list[dict], folder: Path) -> None:
    import pandas as pd

    pd.DataFrame(rows).to_parquet(folder / "prompts.parquet", index=False)
    lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    (folder / "prompts.jsonl").write_text(lines, encoding="utf-8")
    (folder / "failures.jsonl").write_text(
        "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures), encoding="utf-8"
    )


def _check_cache(root: str) -> None:
    """A cache that cannot be used fails now (CacheError); a read-only one is a warning."""
    check = getattr(cache_module, "check_cache_dir", None)  # textualize/cache.py, new
    warning = check(root) if check else None
    if warning:
        log.warning(warning)


def _extract(clips: list[Clip], cfg: TextualizeConfig, plan: ExtractionPlan):
    """Units of every clip by clip id; the engine's workers are stopped however this ends."""
    by_clip: dict[str, list[UnitFeatures]] = {}
    progress = _progress(len(clips), cfg.progress)
    try:
        with closing(extract_units(clips, cfg, plan)) as results:
            for units in results:
                by_clip[units[0].clip.clip_id] = units
                progress.update(1)
                progress.set_postfix_str(units[0].clip.clip_id[-30:], refresh=False)
    finally:
        progress.close()
    return by_clip


def textualize(source: str | Path, output_dir: str | Path, cfg: TextualizeConfig) -> RunSummary:
    """Textualize every clip of ``source`` (folder, manifest or file) into ``output_dir``.

    Nothing is written until every input is checked; ``output_dir`` is then locked (a second
    run on it raises OutputError at once) and replaced as one set when the run ends.
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat()
    output = Path(output_dir)
    check_output(output, Path(source), Path(cfg.cache_dir))
    _check_cache(cfg.cache_dir)
    prior = load_textualizer(cfg.reference) if cfg.reference else None
    cfg = rendering_config(cfg, prior)  # unset options from the prior textualizer, or defaults
    found = discover(source, cfg.labels, strict=cfg.strict)
    clips = found.clips
    if prior is None:
        PromptRenderer(cfg.template, cfg.modalities)  # template errors before any model check
    if all(is_text_only(clip) for clip in clips):  # nothing to extract: no model is checked
        plan = ExtractionPlan(
            "off", ModalityStatus(NO_STREAM, TEXT_ONLY_REASON), False, False, False
        )
    else:
        plan = plan_extraction(cfg)
    if cfg.engine == "ray":
        from textualize.ray_engine import require_ray

        require_ray()  # a missing extra fails now, with the pip command, not after the cached clips
    with locked(output):
        by_clip = _extract(clips, cfg, plan)
        units = [u for c in clips for u in by_clip[c.clip_id]]  # input order, not completion order
        extraction = extraction_identity(plan)
        # A prior textualizer learns the baselines of speakers it has not met (label-free medians).
        if prior:
            textualizer = with_new_speakers(prior, units)
        else:
            textualizer = fit_textualizer(units, cfg, extraction, str(source))
        notes = rendering_notes(textualizer, units, extraction if prior else None)
        reference, renderer = textualizer.prosody, textualizer.renderer()
        rows = [unit_row(u, renderer, reference, cfg.transcript_source) for u in units]
        failures = [
            {
                "clip_id": u.clip.clip_id,
                "path": u.clip.path,
                "modality": m,
                "status": s.status,
                "reason": s.reason,
            }
            for u in (by_clip[c.clip_id][0] for c in clips)
            for m, s in u.status.items()
            if is_gap(s.status)
        ]
        skipped = [  # entries of a source folder that are not clips, each with why
            {
                "clip_id": None,
                "path": e.path,
                "modality": None,
                "status": "skipped",
                "reason": e.reason,
            }
            for e in found.skipped
        ]
        stage_seconds: dict[str, float] = defaultdict(float)
        for c in clips:
            for stage, seconds in by_clip[c.clip_id][0].timings.items():
                stage_seconds[stage] += seconds
        first_units = [by_clip[c.clip_id][0] for c in clips]
        computed_stages = [set(u.timings) - {"media"} - set(u.cached) for u in first_units]
        summary = RunSummary(
            clips=len(clips),
            units=len(units),
            computed=sum(
                1 for u, todo in zip(first_units, computed_stages) if todo and not u.error
            ),
            cached=sum(
                1
                for u, todo in zip(first_units, computed_stages)
                if not todo and not u.error and not is_text_only(u.clip)
            ),
            text_only=sum(1 for u in first_units if is_text_only(u.clip)),
            failed=sum(1 for u in first_units if u.error),
            modality_failures=sum(
                1
                for u in first_units
                if not u.error
                for s in u.status.values()
                if s.status == FAILED
            ),
            gaps=len(failures),
            skipped=len(skipped),
            stage_seconds={k: round(v, 3) for k, v in sorted(stage_seconds.items())},
            status_counts={
                m: {s: sum(1 for u in first_units if u.status[m].status == s) for s in STATUSES}
                for m in MODALITIES
            }
            if first_units
            else {},
            wall_seconds=round(time.perf_counter() - started, 3),
            output_dir=str(output),
        )
        run = {
            "command": " ".join(sys.argv),
            "source": str(source),
            "started_at": started_at,
            "config": to_mapping(cfg),
            "plan": {
                "face": plan.face,
                "face_status": plan.face_status.status,
                "face_reason": plan.face_status.reason,
                "stage_keys": plan.keys,
            },
            "prosody_reference": {
                "source": reference.source,
                "overall": reference.overall,
                "speakers": sorted(reference.by_speaker),
            },
            "textualizer": {
                "file": TEXTUALIZER_FILE,
                "sha256": textualizer.sha256,
                "reference": cfg.reference,  # None: fitted by this run
                "fitted_on": to_mapping(textualizer.fitted_on),
                "labels": list(textualizer.labels),
                **notes,
            },
            "versions": _versions(),
            "summary": to_mapping(summary),
        }
        with replaced_whole(output) as folder:
            _write_outputs(rows, failures + skipped, folder)
            textualizer.save(folder / TEXTUALIZER_FILE)
            run["outputs"] = digests(folder)
            (folder / RUN_FILE).write_text(json.dumps(run, indent=2, default=str))
        return summary


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="clip", desc="textualize", disable=not enabled, dynamic_ncols=True
    )


def format_summary(summary: RunSummary) -> str:
    lines = [
        (
            f"{summary.clips} clips -> {summary.units} prompts in {summary.wall_seconds:.1f}s "
            f"({summary.computed} computed, {summary.cached} from cache, {summary.failed} unreadable, "
            f"{summary.modality_failures} modality failures"
            + (f", {summary.text_only} text-only" if summary.text_only else "")
            + (f", {summary.skipped} skipped: not clips" if summary.skipped else "")
            + ")"
        ),
    ]
    if summary.stage_seconds:
        lines.append(
            "time per stage (s, summed over workers): "
            + ", ".join(f"{k} {v:.1f}" for k, v in summary.stage_seconds.items())
        )
    if summary.status_counts:
        lines.append(
            "clips per modality status: "
            + "; ".join(
                f"{m} " + ", ".join(f"{s} {n}" for s, n in counts.items() if n)
                for m, counts in summary.status_counts.items()
            )
        )
    lines.append(
        f"outputs: {summary.output_dir}/prompts.parquet, prompts.jsonl, failures.jsonl, run.json, "
        f"{TEXTUALIZER_FILE}"
    )
    return "\n".join(lines)


def load_run(output_dir: str | Path) -> tuple[TextualizeConfig, ExtractionPlan, list[Clip]]:
    """Configuration, plan and clips of a finished ``cer textualize`` run, from its output folder.

    With ``read_cached`` this gives every stage's cached result (face frames, prosody LLDs and
    functionals, transcripts) for exactly the clips of that run, without recomputing anything.
    """
    import pandas as pd

    from cer.config import from_mapping
    from textualize.records import ModalityStatus

    output = Path(output_dir)
    run = json.loads((output / "run.json").read_text())
    cfg = from_mapping(TextualizeConfig, run["config"], source=str(output / "run.json"))
    plan_info = run["plan"]
    plan = ExtractionPlan(
        face=plan_info["face"],
        face_status=ModalityStatus(plan_info["face_status"], plan_info["face_reason"]),
        prosody=cfg.prosody,
        transcript=cfg.transcript,
        speech_emotion=bool(cfg.speech_emotion_model),
        keys=plan_info["stage_keys"],
    )
    rows = pd.read_parquet(output / "prompts.parquet").drop_duplicates("clip_id")

    def value(v):
        return None if v is None or (isinstance(v, float) and pd.isna(v)) else v

    clips = [
        Clip(
            clip_id=r["clip_id"],
            path=r["source_path"],
            start=value(r["clip_start"]),
            end=value(r["clip_end"]),
            label=value(r["label"]),
            split=value(r["split"]),
            speaker=value(r["speaker"]),
            gold_text=value(r["gold_text"]),
            context=value(r["context"]),
        )
        for r in rows.to_dict("records")
    ]
    return cfg, plan, clips
