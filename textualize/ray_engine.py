"""The Ray engine of ``cer textualize --engine ray``: the same extraction, scaled out with Ray Data.

The clips of a run become a Ray dataset (one clip per block) that flows through one step per
kind of work:

1. probe and CPU stages: Ray tasks that hash and probe the file, read face tables and run
   openSMILE prosody;
2. one actor pool per model stage of the plan (py-feat faces, Whisper, speech emotion): each
   actor loads its model once and keeps it for every clip it gets; actors ask for a share of a GPU
   when the cluster has GPUs (and ``--device`` is not cpu);
3. a light task that cuts each clip into prompt units, so only small summaries travel back.

On a cluster without GPUs, step 1 asks for the same resources as the first actor pool, and Ray
Data fuses the two (each actor probes, then transcribes): the same work without a trip through
the object store. With GPUs, step 1 stays on CPU tasks and the actors only run models.

Every step calls the local engine's ``extract_clip`` on a plan restricted to its own stages, so
cache keys, cache files and statuses are exactly those of ``--engine local``; later steps read
the probe back from the cache. The units go back to ``textualize.pipeline``, which renders and
writes them as for the local engine. Records travel between steps pickled, so Arrow never has
to infer their types.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from textualize.cache import StageCache
from textualize.config import TextualizeConfig
from textualize.extract import ExtractionPlan, Extractors, extract_clip, limit_threads
from textualize.records import Clip, ClipDescriptors
from textualize.unit_cache import UnitStore
from textualize.units import UnitFeatures

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'cer-textualize[ray]'"
#: Environment a remote cluster's workers need to behave like this process (offline Hub, ...).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TOKENIZERS_PARALLELISM")
MODEL_STAGES = ("face", "transcript", "speech_emotion")


class RayEngineUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached; the message says how to fix it."""


def require_ray() -> None:
    """Fail now, naming the extra to install, when Ray Data cannot be imported."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise RayEngineUnavailable(
            f"--engine ray needs Ray Data, which is not installed here: {INSTALL_HINT} "
            f"(or use --engine local) [{err}]"
        ) from err


# ------------------------------------------------------------------ plans and merging


def stage_plan(plan: ExtractionPlan, stages: tuple[str, ...]) -> ExtractionPlan:
    """``plan`` with only ``stages`` switched on; cache keys unchanged, so entries are shared."""
    face = plan.face if "face" in stages else "off"
    return replace(
        plan,
        face=face,
        prosody=plan.prosody and "prosody" in stages,
        transcript=plan.transcript and "transcript" in stages,
        speech_emotion=plan.speech_emotion and "speech_emotion" in stages,
    )


def cpu_stages(plan: ExtractionPlan) -> tuple[str, ...]:
    """Stages of the first (task) step: face tables are read there, a face detector is a model stage."""
    return ("prosody",) if plan.face == "detector" else ("face", "prosody")


def model_stages(plan: ExtractionPlan) -> tuple[str, ...]:
    wanted = {
        "face": plan.face == "detector",
        "transcript": plan.transcript,
        "speech_emotion": plan.speech_emotion,
    }
    return tuple(stage for stage in MODEL_STAGES if wanted[stage])


def merge_stage(base: ClipDescriptors, part: ClipDescriptors, stage: str) -> ClipDescriptors:
    """``base`` with ``stage``'s result, status, timings and cache hits taken from ``part``.

    ``base`` comes from the first step, which owns the media probe: the probe that ``part`` read
    back from the cache is not counted as a cache hit, so ``cached`` means what it means locally.
    """
    timings = dict(base.timings)
    for name, seconds in part.timings.items():
        timings[name] = timings.get(name, 0.0) + seconds
    if part.error:  # the file changed or vanished between steps
        return replace(part, timings=timings)
    return replace(
        base,
        **{stage: getattr(part, stage)},
        status={m: part.status[m] if m == stage else s for m, s in base.status.items()},
        timings=timings,
        cached=base.cached + tuple(s for s in part.cached if s == stage),
        uncached=base.uncached + tuple(s for s in part.uncached if s == stage),
    )


# ------------------------------------------------------------------ stages (run on Ray workers)

_PROCESS_MODELS: dict[TextualizeConfig, Extractors] = {}  # CPU models of one Ray worker process


def probe_and_cpu_stages(row: dict, cfg: TextualizeConfig, plan: ExtractionPlan) -> dict:
    """Ray task: probe one clip and run its CPU stages; openSMILE is built once per worker process."""
    if cfg not in _PROCESS_MODELS:
        limit_threads(1)
        _PROCESS_MODELS[cfg] = Extractors(cfg)
    clip, models = pickle.loads(row["clip"]), _PROCESS_MODELS[cfg]
    desc = extract_clip(
        clip, cfg, stage_plan(plan, cpu_stages(plan)), models, StageCache(cfg.cache_dir)
    )
    return {"index": row["index"], "descriptors": pickle.dumps(desc)}


class ModelStage:
    """Ray actor: one model stage; the model loads on the first clip that needs it, then stays."""

    def __init__(self, stage: str, cfg: TextualizeConfig, plan: ExtractionPlan, cpu_threads: int):
        self.stage, self.cfg = stage, cfg
        self.plan = stage_plan(plan, (stage,))
        limit_threads(cpu_threads)  # the models' own thread counts are fixed by their stage configs
        self.models = Extractors(cfg)
        self.cache = StageCache(cfg.cache_dir)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out = []
        for payload in batch["descriptors"]:
            desc = pickle.loads(payload)
            if not desc.error:
                part = extract_clip(desc.clip, self.cfg, self.plan, self.models, self.cache)
                desc = merge_stage(desc, part, self.stage)
            out.append(pickle.dumps(desc))
        return {"index": batch["index"], "descriptors": np.array(out, dtype=object)}


def to_units(row: dict, cfg: TextualizeConfig, plan: ExtractionPlan) -> dict:
    """Ray task: cut one clip into prompt units, stored for the next run as the local engine
    stores them, so only small summaries travel back."""
    store = UnitStore(cfg, plan, StageCache(cfg.cache_dir))
    return {
        "index": row["index"],
        "units": pickle.dumps(store.units_of(pickle.loads(row["descriptors"]))),
    }


# ------------------------------------------------------------------ driver


def connect(cfg: TextualizeConfig) -> bool:
    """Join ``cfg.ray_address`` or start a local Ray on ``cfg.worker_count`` CPUs; True if started here.

    A Ray already initialised in this process (a notebook, a test fixture) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING}
    if cfg.ray_address:
        # Workers of a remote cluster do not inherit this process's environment.
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        try:
            ray.init(address=cfg.ray_address, runtime_env={"env_vars": env}, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise RayEngineUnavailable(
                f"cannot join the Ray cluster at --ray-address {cfg.ray_address}: {err}. Start one with "
                "`ray start --head` (address auto), or leave --ray-address unset to start a local Ray"
            ) from err
        return False
    ray.init(address="local", num_cpus=cfg.worker_count, include_dashboard=False, **quiet)
    return True


def actor_resources(
    stages: tuple[str, ...], cfg: TextualizeConfig, cluster: dict[str, float]
) -> tuple[dict, int]:
    """Ray resources of one model actor, and the largest pool of each model stage, for ``cluster``."""
    cpus, gpus = int(cluster.get("CPU", 1)), int(cluster.get("GPU", 0))
    if gpus and cfg.device != "cpu":
        # One actor of every model stage fits on one GPU; at most one actor per stage per GPU.
        return {"num_cpus": 1, "num_gpus": 1 / len(stages)}, gpus
    return {"num_cpus": 1}, max(1, cpus)


def build_dataset(clips: list[Clip], cfg: TextualizeConfig, plan: ExtractionPlan):
    """The Ray dataset of these clips' units: rows ``{"index": position in clips, "units": pickled}``."""
    import ray
    import ray.data

    # Workers on other nodes have another working directory: they get absolute paths.
    cfg = replace(
        cfg,
        cache_dir=os.path.abspath(cfg.cache_dir),
        face_tables=cfg.face_tables and os.path.abspath(cfg.face_tables),
    )
    rows = [
        {"index": i, "clip": pickle.dumps(replace(clip, path=os.path.abspath(clip.path)))}
        for i, clip in enumerate(clips)
    ]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map(probe_and_cpu_stages, fn_args=(cfg, plan), num_cpus=1)
    stages = model_stages(plan)
    if stages:
        resources, pool = actor_resources(stages, cfg, ray.cluster_resources())
        for stage in stages:
            ds = ds.map_batches(
                ModelStage,
                fn_constructor_args=(stage, cfg, plan, resources["num_cpus"]),
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool),
                **resources,
            )
    # Milliseconds per clip: asks for no CPU, so it never holds one back from a model actor.
    ds = ds.map(to_units, fn_args=(cfg, plan), num_cpus=0)
    ds.context.enable_progress_bars = False  # the pipeline's own bar counts clips
    ds.context.print_on_execution_start = False
    return ds


def compute_units(
    clips: list[Clip], cfg: TextualizeConfig, plan: ExtractionPlan
) -> Iterator[list[UnitFeatures]]:
    """The Ray engine: units of every clip, in completion order (same contract as the local engine)."""
    require_ray()
    import ray

    started = time.perf_counter()
    own_cluster = connect(cfg)
    log.info("Ray ready in %.1fs: %s", time.perf_counter() - started, ray.cluster_resources())
    try:
        with _quiet_ray_data():
            for row in build_dataset(clips, cfg, plan).iter_rows():
                # The caller's Clip, its path exactly as given rather than as a worker saw it.
                clip = clips[row["index"]]
                yield [replace(unit, clip=clip) for unit in pickle.loads(row["units"])]
    finally:
        if own_cluster:
            ray.shutdown()


@contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data's INFO lines only with ``-v``; never its notice that its bars are off (ours is on)."""
    data_log, progress_log = (
        logging.getLogger("ray.data"),
        logging.getLogger("ray.data._internal.progress"),
    )
    level, notice = data_log.level, _NoProgressBarNotice()
    if not log.isEnabledFor(logging.INFO):
        data_log.setLevel(logging.WARNING)
    progress_log.addFilter(notice)
    try:
        yield
    finally:
        data_log.setLevel(level)
        progress_log.removeFilter(notice)


class _NoProgressBarNotice(logging.Filter):
    """Ray Data says its bars are off; they are off on purpose (the pipeline shows one bar)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Progress bars disabled" not in record.getMessage()
