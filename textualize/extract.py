"""Extract every modality of one clip, reading and writing the per-stage cache.

The main process decides once what can run (``plan_extraction``: early dependency checks, one
clear message); each worker process builds its models lazily, once, the first time a clip needs
them (``Extractors``), so a fully cached re-run loads no model at all. A stage that fails on a
clip is recorded in that clip's status with its reason, and the other stages still run.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from textualize import media as media_stage
from textualize.cache import StageCache, stage_key
from textualize.config import TextualizeConfig
from textualize.media import MediaError, iter_frames, probe, read_audio
from textualize.records import (
    ABSENT,
    DISABLED,
    FAILED,
    NO_STREAM,
    OK,
    UNAVAILABLE,
    Clip,
    ClipDescriptors,
    FaceTrack,
    MediaInfo,
    ModalityStatus,
    ProsodyTrack,
    SpeechEmotion,
    Transcript,
)

log = logging.getLogger(__name__)


class ModalityUnavailable(RuntimeError):
    """A modality the user explicitly asked for cannot run here; the message says how to fix it."""


class NotCached(LookupError):
    """A stage result is not in the cache and this reader may not compute it."""


@dataclass(frozen=True)
class ExtractionPlan:
    """What runs for this run's clips, decided once in the main process."""

    face: str  # "detector", "tables" or "off"
    face_status: ModalityStatus  # status given to every clip when face == "off"
    prosody: bool
    transcript: bool
    speech_emotion: bool
    # The cache key of each stage that runs: its config's identity() (no model loaded).
    keys: dict[str, dict] = field(default_factory=dict)


def plan_extraction(cfg: TextualizeConfig) -> ExtractionPlan:
    """Check dependencies up front: a missing optional piece fails now, not hours later."""
    face, face_status = "off", ModalityStatus(DISABLED, "face modality turned off")
    if cfg.face_tables:
        if not Path(cfg.face_tables).is_dir():
            raise ModalityUnavailable(f"--face-tables {cfg.face_tables} is not a folder")
        face, face_status = "tables", ModalityStatus(OK)
    elif cfg.face != "off":
        from textualize.faces import FaceModelUnavailable, check_face_backend

        try:
            check_face_backend(cfg.face_stage())
            face, face_status = "detector", ModalityStatus(OK)
        except FaceModelUnavailable as err:
            if cfg.face == "on":
                raise ModalityUnavailable(
                    f"face modality requested (--face on) but unavailable: {err}"
                ) from err
            log.warning("Face modality unavailable, continuing without it: %s", err)
            first_sentence = str(err).split(". ")[0].split(":")[0]
            face_status = ModalityStatus(UNAVAILABLE, f"face model unavailable ({first_sentence})")
    if cfg.transcript:
        from textualize.speech import check_transcriber

        check_transcriber(cfg.speech_stage())  # raises TranscriberUnavailable, fast and offline
    keys = {"media": media_stage.identity()}
    if face == "detector":
        keys["face"] = cfg.face_stage().identity()
    if cfg.prosody:
        keys["prosody"] = cfg.prosody_stage().identity()
    if cfg.transcript:
        keys["transcript"] = cfg.speech_stage().identity()
    if cfg.speech_emotion_model:
        keys["speech_emotion"] = cfg.speech_emotion_stage().identity()
    return ExtractionPlan(
        face, face_status, cfg.prosody, cfg.transcript, bool(cfg.speech_emotion_model), keys
    )


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Cap the threads of this process's numeric libraries at ``threads`` (a share of the cores).

    The models themselves compute on the fixed thread count of their stage config (its
    ``threads``, part of its identity), set when each model is built, so a worker's share of
    the cores never changes the bytes they produce.
    """
    for var in THREAD_VARIABLES:
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


class Extractors:
    """The models of one worker process, each built on first use and then reused.

    Each model computes on its stage config's fixed thread count (part of its cache key).
    """

    def __init__(self, cfg: TextualizeConfig):
        self.cfg = cfg
        self._models: dict[str, object] = {}

    def get(self, name: str):
        if name not in self._models:
            self._models[name] = self._build(name)
        return self._models[name]

    def _build(self, name: str):
        cfg = self.cfg
        if name == "face":
            from textualize.faces import FaceExtractor

            return FaceExtractor(cfg.face_stage())
        if name == "prosody":
            from textualize.prosody import ProsodyExtractor

            return ProsodyExtractor(cfg.prosody_stage())
        if name == "transcript":
            from textualize.speech import load_transcriber

            return load_transcriber(cfg.speech_stage())
        if name == "speech_emotion":
            from textualize.speech_emotion import SpeechEmotionModel

            return SpeechEmotionModel(cfg.speech_emotion_stage())
        raise KeyError(name)


# ------------------------------------------------------------------ cache serialisation


def _table_bytes(frame: pd.DataFrame, meta: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"cer": json.dumps(meta).encode()}
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _table_from_bytes(data: bytes) -> tuple[pd.DataFrame, dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # ParquetFile, not read_table: the dataset machinery behind read_table costs twice the read
    # of a table this small (a cached re-render reads one per clip); one thread for the same reason.
    table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    meta = json.loads(table.schema.metadata[b"cer"])
    return table.to_pandas(use_threads=False), meta


def _face_to_bytes(track: FaceTrack) -> bytes:
    return _table_bytes(track.to_table(), {"source": track.source, "au_scale": track.au_scale})


def _face_from_bytes(data: bytes) -> FaceTrack:
    frame, meta = _table_from_bytes(data)
    return FaceTrack.from_table(frame, meta["source"], meta["au_scale"])


def _prosody_to_bytes(track: ProsodyTrack) -> bytes:
    return _table_bytes(track.lld, {"functionals": track.functionals, "duration": track.duration})


def _prosody_from_bytes(data: bytes) -> ProsodyTrack:
    frame, meta = _table_from_bytes(data)
    return ProsodyTrack(frame, meta["functionals"], meta["duration"])


# ------------------------------------------------------------------ per clip


def find_face_table(folder: str, clip: Clip) -> Path | None:
    for name in (clip.clip_id, Path(clip.path).stem):
        candidate = Path(folder) / f"{name}.csv"
        if candidate.is_file():
            return candidate
    return None


def _failure(err: BaseException) -> ModalityStatus:
    return ModalityStatus(FAILED, f"{type(err).__name__}: {err}".strip())


class _ClipRun:
    """The state of one clip's extraction: its hash, lazily decoded audio, timings, statuses."""

    def __init__(
        self,
        clip: Clip,
        cfg: TextualizeConfig,
        plan: ExtractionPlan,
        models: Extractors,
        cache: StageCache,
    ):
        self.clip, self.cfg, self.plan, self.models, self.cache = clip, cfg, plan, models, cache
        self.span = (clip.start, clip.end)
        self.timings: dict[str, float] = {}
        self.cached: list[str] = []
        self.status: dict[str, ModalityStatus] = {}
        self._audio = None
        self.audio_lost: float | None = None  # seconds of the span damage took; None: not decoded
        self.info: MediaInfo | None = None
        self.hash = ""

    def timed(self, stage: str, started: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started

    def key(self, stage: str) -> str:
        return stage_key(stage, self.hash, self.span, self.plan.keys[stage], "")

    def model(self, stage: str):
        """The stage's model, refused if it computes otherwise than its cache key says (a Ray
        worker that sees a GPU the main process did not see), so no entry is mislabelled."""
        from textualize.stage_identity import identity_text

        model = self.models.get(stage)
        planned = identity_text(self.plan.keys[stage])
        if model.version != planned:
            raise RuntimeError(
                f"this worker's {stage} model computes as [{model.version}], but the run's "
                f"cache key says [{planned}]; set --device cpu or cuda explicitly"
            )
        return model

    def lookup(self, stage: str, suffix: str) -> bytes | None:
        if self.cfg.force:
            return None
        data = self.cache.get(stage, self.key(stage), suffix)
        if data is not None:
            self.cached.append(stage)
        return data

    def inputs(self, stage: str):
        """The stage's model and the clip's audio. The model comes first, so a cache-only read
        (``read_cached``) raises NotCached before decoding anything; building it counts to the
        stage's time, decoding to its own."""
        started = time.perf_counter()
        model = self.model(stage)
        self.timed(stage, started)
        return model, self.audio()

    def audio(self):
        if self._audio is None:
            started = time.perf_counter()
            decoded = read_audio(
                self.clip.path, self.clip.start, self.clip.end, stream=self.info.audio_stream
            )
            self._audio, self.audio_lost = decoded.samples, decoded.lost_seconds
            self.timed("decode_audio", started)
        return self._audio

    def media(self) -> MediaInfo:
        started = time.perf_counter()
        self.hash = self.cache.file_hash(self.clip.path)
        data = self.lookup("media", ".json")
        if data is not None:
            info = MediaInfo.from_json(data.decode())
        else:
            info = probe(self.clip.path, self.clip.start, self.clip.end)
            self.cache.put("media", self.key("media"), ".json", info.to_json().encode())
        self.timed("media", started)
        self.info = info
        return info

    def face(self, info: MediaInfo) -> FaceTrack | None:
        plan = self.plan
        if not info.has_video:
            self.status["face"] = ModalityStatus(NO_STREAM, "no video stream")
            return None
        if plan.face == "off":
            self.status["face"] = plan.face_status
            return None
        started = time.perf_counter()
        if plan.face == "tables":
            from textualize.face_tables import read_face_table

            table = find_face_table(self.cfg.face_tables, self.clip)
            if table is None:
                self.status["face"] = ModalityStatus(
                    UNAVAILABLE, f"no face table for {self.clip.clip_id} in {self.cfg.face_tables}"
                )
                return None
            track = read_face_table(table, fps=info.video_fps)
            if self.clip.start is not None or self.clip.end is not None:
                begin = self.clip.start or 0.0
                track = track.between(begin, self.clip.end or float("inf"))
                track = FaceTrack(
                    track.frames.assign(time=track.frames["time"] - begin),
                    track.source,
                    track.au_scale,
                )
        else:
            data = self.lookup("face", ".parquet")
            if data is not None:
                track = _face_from_bytes(data)
            else:
                frames = iter_frames(self.clip.path, self.cfg.fps, self.clip.start, self.clip.end)
                track = self.model("face").extract(frames)
                self.cache.put("face", self.key("face"), ".parquet", _face_to_bytes(track))
        self.timed("face", started)
        has_face = bool(track.frames["face"].astype(bool).any())
        self.status["face"] = (
            ModalityStatus(OK) if has_face else ModalityStatus(ABSENT, "no face visible")
        )
        return track

    def prosody(self) -> ProsodyTrack:
        data = self.lookup("prosody", ".parquet")
        model, audio = (None, None) if data is not None else self.inputs("prosody")
        started = time.perf_counter()
        if data is not None:
            track = _prosody_from_bytes(data)
        else:
            track = model.extract(audio, 16_000)
            self.cache.put("prosody", self.key("prosody"), ".parquet", _prosody_to_bytes(track))
        self.timed("prosody", started)
        from textualize.prosody import is_silent

        silent = is_silent(track.lld, 0.0, track.duration)
        self.status["prosody"] = ModalityStatus(ABSENT, "silence") if silent else ModalityStatus(OK)
        return track

    def transcript(self) -> Transcript:
        data = self.lookup("transcript", ".json")
        model, audio = (None, None) if data is not None else self.inputs("transcript")
        started = time.perf_counter()
        if data is not None:
            result = Transcript.from_json(data.decode())
        else:
            from textualize.speech import transcribe_long

            result = transcribe_long(model, audio)
            self.cache.put("transcript", self.key("transcript"), ".json", result.to_json().encode())
        self.timed("transcript", started)
        self.status["transcript"] = (
            ModalityStatus(OK) if result.text.strip() else ModalityStatus(ABSENT, "no speech")
        )
        return result

    def speech_emotion(self) -> SpeechEmotion:
        data = self.lookup("speech_emotion", ".json")
        model, audio = (None, None) if data is not None else self.inputs("speech_emotion")
        started = time.perf_counter()
        if data is not None:
            result = SpeechEmotion.from_json(data.decode())
        else:
            result = model.predict(audio, 16_000)
            self.cache.put(
                "speech_emotion", self.key("speech_emotion"), ".json", result.to_json().encode()
            )
        self.timed("speech_emotion", started)
        self.status["speech_emotion"] = ModalityStatus(OK)
        return result


def extract_clip(
    clip: Clip, cfg: TextualizeConfig, plan: ExtractionPlan, models: Extractors, cache: StageCache
) -> ClipDescriptors:
    """All modalities of one clip; never raises for a bad clip (errors become statuses)."""
    run = _ClipRun(clip, cfg, plan, models, cache)
    try:
        info = run.media()
    except (MediaError, OSError) as err:
        reason = str(err)
        status = {
            m: ModalityStatus(FAILED, reason)
            for m in ("face", "prosody", "transcript", "speech_emotion")
        }
        return ClipDescriptors(clip, run.hash, error=reason, status=status, timings=run.timings)
    results: dict[str, object] = {}
    uncached: list[str] = []
    try:
        results["face"] = run.face(info)
    except NotCached:
        uncached.append("face")
        run.status["face"] = ModalityStatus(FAILED, "not in the cache; run `cer textualize` first")
    except Exception as err:  # noqa: BLE001 - recorded per clip, the run goes on
        run.status["face"] = _failure(err)
    audio_stages = [
        ("prosody", plan.prosody),
        ("transcript", plan.transcript),
        ("speech_emotion", plan.speech_emotion),
    ]
    for stage, wanted in audio_stages:
        if not wanted:
            run.status[stage] = ModalityStatus(DISABLED, f"{stage.replace('_', ' ')} turned off")
        elif not info.has_audio:
            run.status[stage] = ModalityStatus(NO_STREAM, "no audio stream")
        else:
            try:
                results[stage] = getattr(run, stage)()
            except NotCached:
                uncached.append(stage)
                run.status[stage] = ModalityStatus(
                    FAILED, "not in the cache; run `cer textualize` first"
                )
            except Exception as err:  # noqa: BLE001 - recorded per clip, the run goes on
                run.status[stage] = _failure(err)
    if run.audio_lost:
        note = f"{run.audio_lost:.1f} s of audio unreadable (damaged file), filled with silence"
        for stage, status in run.status.items():
            if stage != "face" and status.status == OK:
                run.status[stage] = ModalityStatus(OK, note)
        info = dataclasses.replace(info, audio_lost_seconds=run.audio_lost)
    return ClipDescriptors(
        clip,
        run.hash,
        info,
        face=results.get("face"),
        prosody=results.get("prosody"),
        transcript=results.get("transcript"),
        speech_emotion=results.get("speech_emotion"),
        status=run.status,
        timings=run.timings,
        cached=tuple(run.cached),
        uncached=tuple(uncached),
    )


class _CacheOnlyModels(Extractors):
    def get(self, name: str):
        raise NotCached(f"{name} is not cached for this clip; run `cer textualize` first")


def read_cached(
    clip: Clip, cfg: TextualizeConfig, plan: ExtractionPlan, cache: StageCache
) -> ClipDescriptors:
    """A clip's descriptors from the cache only (no model is built, nothing is decoded).

    Stages missing from the cache come back with status ``failed`` and a reason naming
    ``cer textualize``; used by the feature baseline so it never re-runs an extractor.
    """
    return extract_clip(clip, cfg, plan, _CacheOnlyModels(cfg), cache)
