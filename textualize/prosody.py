"""Voice prosody with openSMILE eGeMAPSv02: low-level descriptors, functionals and span summaries.

``ProsodyExtractor.extract`` turns a mono float waveform into a ``records.ProsodyTrack``: one LLD
row every 10 ms (column ``time`` = start of the analysis frame, in seconds from the clip start)
and the 88 eGeMAPS functionals of the whole clip. ``summarize_prosody`` then describes any time
span from the LLDs alone (pitch, loudness, voicing, pauses, voice quality), so a new window never
re-runs openSMILE.

Memory: openSMILE keeps the whole waveform and, for its clip-level functionals, every frame of
every descriptor. LLDs of audio longer than ``chunk_sec`` are therefore computed chunk by chunk,
each chunk padded with ``chunk_margin_sec`` of context on both sides that is analysed and then
dropped, so peak memory depends on the chunk length, not on the audio length. Whole-clip
functionals cannot be chunked; they are computed for audio up to ``functionals_max_sec`` and
left NaN beyond it.

``ProsodyConfig.identity`` names what changes the extracted bytes (openSMILE version, feature set,
chunking); the summary thresholds only change words, so they are not part of it.
"""

from __future__ import annotations

import importlib.metadata
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from textualize.records import ProsodyTrack, Word

LLD_HOP_SEC = 0.010  # frame step of the GeMAPS family configs
LOUDNESS_PEAK_REL_THRESHOLD = 0.1  # as eGeMAPS loudnessPeaksPerSec (Peaks2.relThresh)

F0 = "F0semitoneFrom27.5Hz_sma3nz"  # 0 in unvoiced frames
LOUDNESS = "Loudness_sma3"
JITTER = "jitterLocal_sma3nz"
SHIMMER = "shimmerLocaldB_sma3nz"
HNR = "HNRdBACF_sma3nz"
ALPHA_RATIO = "alphaRatio_sma3"  # dB, energy 1-5 kHz over 50 Hz-1 kHz: higher = brighter
HAMMARBERG = "hammarbergIndex_sma3"  # dB, strongest peak 0-2 kHz over 2-5 kHz: higher = darker
H1_H2 = "logRelF0-H1-H2_sma3nz"  # dB, first over second harmonic: higher = breathier
SUMMARY_LLDS = (F0, LOUDNESS, JITTER, SHIMMER, HNR)
TIMBRE_LLDS = (ALPHA_RATIO, HAMMARBERG, H1_H2)  # optional: summaries are None without them


class ProsodyError(ValueError):
    """Base class of the errors this stage raises; the pipeline records them per clip."""


class ProsodyConfigError(ProsodyError):
    """The configuration names a feature set or threshold this stage cannot use."""


class ProsodyInputError(ProsodyError):
    """The waveform cannot be analysed (not mono, not finite, bad sample rate)."""


@dataclass(frozen=True)
class ProsodyConfig:
    """How the prosody stage extracts (feature set, chunking) and summarises (pause, silence)."""

    feature_set: str = field(
        default="eGeMAPSv02",
        metadata={
            "help": "openSMILE feature set (an opensmile.FeatureSet name) of the GeMAPS "
            "family; its LLDs must include F0 semitones, loudness, jitter, shimmer, HNR."
        },
    )
    chunk_sec: float = field(
        default=60.0,
        metadata={
            "help": "LLDs of longer audio are computed in chunks of this many seconds, "
            "which bounds memory (openSMILE needs ~35 MB per minute of chunk)."
        },
    )
    chunk_margin_sec: float = field(
        default=2.0,
        metadata={
            "help": "context analysed on each side of a chunk and then dropped, so pitch "
            "tracking and smoothing see no artificial edge."
        },
    )
    functionals_max_sec: float = field(
        default=600.0,
        metadata={
            "help": "whole-clip functionals need openSMILE to keep every frame of the clip "
            "(~33 MB per minute of audio); longer audio gets NaN functionals."
        },
    )
    min_pause_sec: float = field(
        default=0.25,
        metadata={"help": "shortest run of unvoiced, quiet frames that counts as a pause (s)."},
    )
    pause_loudness: float = field(
        default=0.2,
        metadata={
            "help": "eGeMAPS loudness (Loudness_sma3, ~sone) below which an unvoiced frame "
            "is quiet; white noise at -50 dBFS measures ~0.2, speech mostly 0.3-2."
        },
    )
    min_voiced_sec: float = field(
        default=0.05,
        metadata={"help": "a span with less voiced time than this (s) summarises as silent."},
    )

    def __post_init__(self) -> None:
        for name in ("chunk_sec", "functionals_max_sec", "min_pause_sec"):
            if not getattr(self, name) > 0:
                raise ProsodyConfigError(f"prosody {name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.chunk_margin_sec < self.chunk_sec:
            raise ProsodyConfigError(
                f"prosody chunk_margin_sec must be in [0, chunk_sec={self.chunk_sec}), "
                f"got {self.chunk_margin_sec}"
            )

    def identity(self) -> dict:
        """What changes the extracted LLDs and functionals: the cache key of the prosody stage,
        its entry in ``run.json`` and (as text) ``ProsodyExtractor.version``. openSMILE runs on
        one thread, so no device or thread count belongs here."""
        try:
            version = importlib.metadata.version("opensmile")
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        return {
            "opensmile": version,
            "feature_set": self.feature_set,
            "chunk_sec": self.chunk_sec,
            "chunk_margin_sec": self.chunk_margin_sec,
            "functionals_max_sec": self.functionals_max_sec,
        }


class ProsodyExtractor:
    """openSMILE LLD and functional extractors, built once and reused for every clip."""

    def __init__(self, config: ProsodyConfig):
        import opensmile

        try:
            feature_set = opensmile.FeatureSet[config.feature_set]
        except KeyError as err:
            names = ", ".join(fs.name for fs in opensmile.FeatureSet)
            raise ProsodyConfigError(
                f"unknown openSMILE feature set {config.feature_set!r}; use one of: {names}"
            ) from err
        self.config = config
        self._lld = opensmile.Smile(feature_set, opensmile.FeatureLevel.LowLevelDescriptors)
        self._functionals = opensmile.Smile(feature_set, opensmile.FeatureLevel.Functionals)
        missing = [name for name in SUMMARY_LLDS if name not in self._lld.feature_names]
        if missing:
            raise ProsodyConfigError(
                f"feature set {config.feature_set} lacks the LLDs {missing} that prosody "
                "summaries need; use eGeMAPSv02 (or another GeMAPS set)"
            )
        self.lld_names: tuple[str, ...] = tuple(self._lld.feature_names)
        self.functional_names: tuple[str, ...] = tuple(self._functionals.feature_names)
        from textualize.stage_identity import identity_text

        self.identity = config.identity()
        self.version = identity_text(self.identity)

    def extract(self, audio: np.ndarray, sample_rate: int = 16000) -> ProsodyTrack:
        """LLDs and functionals of a mono float waveform in [-1, 1].

        Audio shorter than one analysis frame (60 ms) gives an empty LLD table and NaN
        functionals, which summarise as silent.
        """
        signal = _as_mono(audio, sample_rate)
        duration = signal.size / sample_rate
        if self._one_chunk(signal, sample_rate):
            times, values, functionals = self._both_levels(signal, sample_rate)
            lld = pd.DataFrame(values, columns=list(self.lld_names))
            lld.insert(0, "time", np.round(times, 6))
            return ProsodyTrack(
                lld=lld.dropna(how="all", subset=list(self.lld_names)).reset_index(drop=True),
                functionals=dict(zip(self.functional_names, map(float, functionals))),
                duration=duration,
            )
        return ProsodyTrack(
            lld=self._extract_lld(signal, sample_rate),
            functionals=self._extract_functionals(signal, sample_rate),
            duration=duration,
        )

    def _one_chunk(self, signal: np.ndarray, sample_rate: int) -> bool:
        """Whether the LLDs come from one chunk and the functionals are computed (a short clip):
        then one openSMILE run gives both."""
        hop = round(LLD_HOP_SEC * sample_rate)
        chunk = max(hop, round(self.config.chunk_sec * sample_rate / hop) * hop)
        return signal.size <= chunk and signal.size / sample_rate <= self.config.functionals_max_sec

    def _both_levels(
        self, signal: np.ndarray, sample_rate: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LLD frame times and values, and the functionals, from ONE openSMILE run.

        ``Smile.process_signal`` runs the whole feature-set config once per level it reads; the
        config computes both levels anyway, so this run attaches a sink to each (openSMILE's own
        two-sink include, ``EXTERNAL_OUTPUT_MULTI_CONFIG``), with the options and the int16
        conversion ``Smile`` uses. ``tests/test_prosody.py`` checks the values equal the two
        ``process_signal`` runs'. Audio shorter than one frame gives no LLD rows and NaN
        functionals, as there.
        """
        import os

        from opensmile.core.config import config

        smile_cfg = self._functionals
        options = smile_cfg._options()
        del options["sinkLevel"]
        root = smile_cfg.default_config_root
        options |= {
            "sink": os.path.join(root, config.EXTERNAL_OUTPUT_MULTI_CONFIG),
            "sinkLevelLLD": opensmile_level(self._lld),
            "sinkLevelFunc": opensmile_level(self._functionals),
            "source": os.path.join(root, config.EXTERNAL_INPUT_CONFIG),
            "sampleRate": sample_rate,
            "nBits": 16,
        }
        lld, lld_times, func = [], [], []
        smile = smile_cfg._smile(options=options)
        try:
            smile.external_sink_set_callback_ex(
                "extsinklld",
                lambda data, meta: (lld.append(data.copy()), lld_times.append(meta.time)),
            )
            smile.external_sink_set_callback_ex(
                "extsinkfunc", lambda data, meta: func.append(data.copy())
            )
            samples = (signal * 32768).astype(np.int16)
            smile.external_audio_source_write_data(config.EXTERNAL_SOURCE_COMPONENT, bytes(samples))
            smile.external_audio_source_set_eoi(config.EXTERNAL_SOURCE_COMPONENT)
            smile.run()
        finally:
            smile.free()
        width = len(self.lld_names)
        values = np.vstack([np.ravel(row) for row in lld]) if lld else np.zeros((0, width))
        times = np.asarray(lld_times, dtype=np.float64)
        if times.size:
            times[0] = 0.0  # as Smile: the first frame starts where the signal does
        functionals = np.ravel(func[0]) if func else np.full(len(self.functional_names), np.nan)
        return times, values, functionals

    def _extract_lld(self, signal: np.ndarray, sample_rate: int) -> pd.DataFrame:
        hop = round(LLD_HOP_SEC * sample_rate)
        # Chunk edges and margins on the frame grid, so chunk frames land on the whole-clip grid.
        chunk = max(hop, round(self.config.chunk_sec * sample_rate / hop) * hop)
        margin = round(self.config.chunk_margin_sec * sample_rate / hop) * hop
        pieces = []
        for core_start in range(0, max(signal.size, 1), chunk):
            core_end = core_start + chunk
            last = core_end >= signal.size
            start = max(0, core_start - margin)
            stop = signal.size if last else min(signal.size, core_end + margin)
            frames = self._run(self._lld, signal[start:stop], sample_rate)
            offset = start / sample_rate
            times = frames.index.get_level_values("start").total_seconds().to_numpy() + offset
            keep = times >= core_start / sample_rate - 1e-9
            if not last:
                keep &= times < core_end / sample_rate - 1e-9
            kept = frames[keep].reset_index(drop=True)
            kept.insert(0, "time", np.round(times[keep], 6))
            pieces.append(kept.dropna(how="all", subset=list(self.lld_names)))
        return pd.concat(pieces, ignore_index=True)

    def _extract_functionals(self, signal: np.ndarray, sample_rate: int) -> dict[str, float]:
        if signal.size / sample_rate > self.config.functionals_max_sec:
            return dict.fromkeys(self.functional_names, math.nan)
        row = self._run(self._functionals, signal, sample_rate).iloc[0]
        return {name: float(row[name]) for name in self.functional_names}

    @staticmethod
    def _run(smile, signal: np.ndarray, sample_rate: int) -> pd.DataFrame:
        with warnings.catch_warnings():
            # Audio shorter than a frame: openSMILE warns and returns one NaN row, handled above.
            warnings.filterwarnings("ignore", message="Segment too short")
            return smile.process_signal(signal, sample_rate)


def opensmile_level(smile) -> str:
    """The data-memory level name a ``Smile`` object reads (``lld``, ``func``...)."""
    level = smile.feature_level
    return level.value if hasattr(level, "value") else str(level)


def _as_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise ProsodyInputError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    signal = np.asarray(audio, dtype=np.float32)
    if signal.ndim == 2 and 1 in signal.shape:
        signal = signal.reshape(-1)
    if signal.ndim != 1:
        raise ProsodyInputError(
            f"prosody needs mono audio, got shape {signal.shape}; mix the channels down first"
        )
    if not np.isfinite(signal).all():
        raise ProsodyInputError("audio contains NaN or infinite samples; check the decoder")
    # openSMILE converts with int16(x * 32768), which wraps around for samples at or above 1.0.
    return np.clip(signal, -1.0, 32767 / 32768)


@dataclass(frozen=True)
class ProsodySummary:
    """Interpretable prosody of a span, computed from LLDs only (so any time window can be
    summarised from the cached LLDs without re-running openSMILE)."""

    duration: float
    voiced_ratio: float  # fraction of frames with F0
    pitch_mean_st: float | None  # F0 mean, semitones from 27.5 Hz, voiced frames
    pitch_sd_st: float | None  # F0 variability
    loudness_mean: float
    loudness_sd: float
    speaking_rate: float  # voiced segments per second (eGeMAPS definition)
    loudness_peaks_per_sec: float  # loudness maxima above the pause loudness, per second
    pause_ratio: float  # fraction of the span in pauses (unvoiced AND quiet runs >= min pause)
    mean_pause_sec: float | None
    jitter: float | None
    shimmer_db: float | None
    hnr_db: float | None
    # Measured over the speech itself: from the first to the last voiced frame of the span, so
    # silence before and after the speaker talks counts for nothing.
    speech_sec: float  # first voiced frame to the end of the last one (0 when silent)
    pitch_median_st: float | None
    pitch_range_st: float | None  # 10th to 90th percentile of F0, semitones
    loudness_speech: float | None  # mean loudness inside the speech
    loudness_variation: float | None  # its standard deviation over its mean
    syllables: float | None  # from the transcript's words when given, else loudness peaks
    articulation_rate: float | None  # syllables per second of speech, pauses excluded
    inner_pauses: float  # pauses inside the speech (not before or after it)
    inner_pause_sec: float  # their total length
    pitch_trend_st: float | None  # median F0 of the last third of voiced frames minus the first
    loudness_trend: float | None  # log2 of mean loudness, last third of the speech over the first
    pitch_peak_pos: float | None  # where F0 is highest, 0 = start of speech, 1 = end
    loudness_peak_pos: float | None  # where loudness is highest (smoothed over 100 ms)
    alpha_ratio_db: float | None  # voiced frames; see TIMBRE_LLDS
    hammarberg_db: float | None
    h1_h2_db: float | None
    silent: bool  # no voice activity at all (the pipeline says "silence")

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


SUMMARY_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(ProsodySummary) if f.name != "silent"
)


def summarize_prosody(
    lld: pd.DataFrame,
    start: float = 0.0,
    end: float | None = None,
    config: ProsodyConfig = ProsodyConfig(),
    words: Sequence[Word] = (),
) -> ProsodySummary:
    """Summarise the LLD frames whose ``time`` lies in [start, end).

    ``end=None`` means up to the end of the last frame. Frames are 10 ms apart, so rates are per
    second of the span and ratios are fractions of its frames. ``words``: the transcript's words
    with timestamps on the LLD time base; those whose midpoint lies in the span give the syllable
    count of ``articulation_rate`` (else loudness peaks inside the speech stand in for syllables).
    """
    span, end = _span_columns(lld, start, end)
    duration = max(0.0, float(end) - float(start))
    f0, loudness = span[F0], span[LOUDNESS]
    n = f0.size
    voiced = f0 > 0
    quiet = ~voiced & (loudness < config.pause_loudness)
    pauses = [
        length * LLD_HOP_SEC
        for length in _run_lengths(quiet)
        if length * LLD_HOP_SEC >= config.min_pause_sec - 1e-9
    ]
    per_sec = 1.0 / duration if duration > 0 else 0.0
    return ProsodySummary(
        duration=duration,
        voiced_ratio=float(voiced.mean()) if n else 0.0,
        pitch_mean_st=_mean(f0[voiced]),
        pitch_sd_st=float(f0[voiced].std()) if voiced.sum() >= 2 else None,
        loudness_mean=float(loudness.mean()) if n else 0.0,
        loudness_sd=float(loudness.std()) if n else 0.0,
        speaking_rate=len(_run_lengths(voiced)) * per_sec,
        loudness_peaks_per_sec=_count_peaks(
            loudness, LOUDNESS_PEAK_REL_THRESHOLD, config.pause_loudness
        )
        * per_sec,
        pause_ratio=min(1.0, sum(pauses) / duration) if duration > 0 else 0.0,
        mean_pause_sec=float(np.mean(pauses)) if pauses else None,
        # openSMILE writes 0 where a period-based measure is undefined, as in its "nz" functionals.
        jitter=_mean(_nonzero(span[JITTER], voiced)),
        shimmer_db=_mean(_nonzero(span[SHIMMER], voiced)),
        hnr_db=_mean(span[HNR][voiced]),
        **_speech_measures(span, voiced, quiet, config, _words_in(words, start, end)),
        silent=_too_little_voice(voiced, config),
    )


def is_silent(
    lld: pd.DataFrame,
    start: float = 0.0,
    end: float | None = None,
    config: ProsodyConfig = ProsodyConfig(),
) -> bool:
    """``summarize_prosody(lld, start, end, config).silent``, without the rest of the summary."""
    span, _ = _span_columns(lld, start, end, (F0,))
    return _too_little_voice(span[F0] > 0, config)


def _too_little_voice(voiced: np.ndarray, config: ProsodyConfig) -> bool:
    return bool(voiced.sum() * LLD_HOP_SEC < config.min_voiced_sec)


def _span_columns(
    lld: pd.DataFrame, start: float, end: float | None, names: Sequence[str] = ()
) -> tuple[dict[str, np.ndarray], float]:
    """The columns ``names`` (default: the summary LLDs and the timbre LLDs present) of the
    frames in [start, end), as float64 arrays by name, and the span's end (``end=None``: the end
    of the last frame). Plain arrays: a cached re-render summarises every clip, and slicing the
    whole LLD table per span cost more than the summary itself."""
    missing = [c for c in ("time", *SUMMARY_LLDS) if c not in lld.columns]
    if missing:
        raise ProsodyInputError(
            f"LLD table lacks columns {missing}; pass ProsodyTrack.lld from ProsodyExtractor"
        )
    times = lld["time"].to_numpy(dtype=np.float64)
    if end is None:
        end = max(start, float(times.max()) + LLD_HOP_SEC) if times.size else start
    inside = (times >= start) & (times < end)
    names = names or (*SUMMARY_LLDS, *(c for c in TIMBRE_LLDS if c in lld.columns))
    return {c: lld[c].to_numpy(dtype=np.float64)[inside] for c in names}, end


def _words_in(words: Sequence[Word], start: float, end: float) -> list[str]:
    return [w.word for w in words if start <= (w.start + w.end) / 2 < end and w.word.strip()]


_VOWEL_GROUPS = re.compile(r"[aeiouyàáâäãåæèéêëìíîïòóôöõøœùúûü]+", re.IGNORECASE)


def count_syllables(word: str) -> int:
    """Vowel groups of a word, at least one (English-like spelling; "talking" -> 2, "door" -> 1).

    A final silent "e" is not a syllable ("are" -> 1). Words in scripts without Latin vowels count
    one syllable each.
    """
    letters = word.strip().lower().strip(".,!?;:\"'()-")
    groups = len(_VOWEL_GROUPS.findall(letters))
    syllabic_le = letters.endswith("le") and len(letters) > 2 and letters[-3] not in "aeiouy"
    if (
        groups > 1
        and letters.endswith("e")
        and not letters.endswith(("ee", "ye"))
        and not syllabic_le
    ):
        groups -= 1  # "while", "are"; but "little", "free"
    return max(1, groups)


def _speech_measures(
    span: dict[str, np.ndarray],
    voiced: np.ndarray,
    quiet: np.ndarray,
    config: ProsodyConfig,
    words: list[str],
) -> dict[str, float | None]:
    """Measures of the speech inside a span: from its first to its last voiced frame."""
    where = np.flatnonzero(voiced)
    if where.size < 2:
        return dict.fromkeys(_SPEECH_FIELDS, None) | {
            "speech_sec": 0.0,
            "inner_pauses": 0.0,
            "inner_pause_sec": 0.0,
        }
    first, last = int(where[0]), int(where[-1]) + 1
    speech_sec = (last - first) * LLD_HOP_SEC
    f0 = span[F0][first:last]
    loudness = span[LOUDNESS][first:last]
    inner = voiced[first:last]
    pauses = [
        n * LLD_HOP_SEC
        for n in _run_lengths(quiet[first:last])
        if n * LLD_HOP_SEC >= config.min_pause_sec - 1e-9
    ]
    speaking_sec = max(speech_sec - sum(pauses), LLD_HOP_SEC)
    if words:
        syllables = float(sum(count_syllables(w) for w in words))
    else:
        syllables = float(
            _count_peaks(loudness, LOUDNESS_PEAK_REL_THRESHOLD, config.pause_loudness)
        )
    pitch = f0[inner]
    third = max(1, pitch.size // 3)
    loud_third = max(1, loudness.size // 3)
    smooth = np.convolve(loudness, np.ones(10) / 10, mode="same")
    mean_loudness = float(loudness.mean())
    timbre = {
        name: _mean(span[column][voiced]) if column in span else None
        for name, column in (
            ("alpha_ratio_db", ALPHA_RATIO),
            ("hammarberg_db", HAMMARBERG),
            ("h1_h2_db", H1_H2),
        )
    }
    return {
        "speech_sec": speech_sec,
        "pitch_median_st": float(np.median(pitch)),
        "pitch_range_st": float(np.percentile(pitch, 90) - np.percentile(pitch, 10)),
        "loudness_speech": mean_loudness,
        "loudness_variation": float(loudness.std() / mean_loudness) if mean_loudness > 0 else None,
        "syllables": syllables,
        "articulation_rate": syllables / speaking_sec,
        "inner_pauses": float(len(pauses)),
        "inner_pause_sec": float(sum(pauses)),
        "pitch_trend_st": float(np.median(pitch[-third:]) - np.median(pitch[:third])),
        "loudness_trend": _log2_ratio(loudness[-loud_third:].mean(), loudness[:loud_third].mean()),
        "pitch_peak_pos": float(np.flatnonzero(inner)[np.argmax(pitch)] / max(1, inner.size - 1)),
        "loudness_peak_pos": float(np.argmax(smooth) / max(1, smooth.size - 1)),
        **timbre,
    }


_SPEECH_FIELDS = (
    "speech_sec",
    "pitch_median_st",
    "pitch_range_st",
    "loudness_speech",
    "loudness_variation",
    "syllables",
    "articulation_rate",
    "inner_pauses",
    "inner_pause_sec",
    "pitch_trend_st",
    "loudness_trend",
    "pitch_peak_pos",
    "loudness_peak_pos",
    "alpha_ratio_db",
    "hammarberg_db",
    "h1_h2_db",
)


def _log2_ratio(numerator: float, denominator: float) -> float | None:
    floor = 1e-3  # loudness of digital silence is 0; keep the ratio finite
    return float(np.log2(max(numerator, floor) / max(denominator, floor)))


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _nonzero(column: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    values = column[voiced]
    return values[values != 0]


def _run_lengths(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return (edges[1::2] - edges[::2]).tolist()


def _count_peaks(contour: np.ndarray, rel_threshold: float, floor: float) -> int:
    """Maxima above ``floor`` that rise and fall by rel_threshold of the contour's range.

    Like eGeMAPS loudnessPeaksPerSec (openSMILE Peaks2), plus the floor so that the ripple of
    steady background noise does not count as syllables.
    """
    if contour.size < 3:
        return 0
    threshold = rel_threshold * float(contour.max() - contour.min())
    if threshold <= 0:
        return 0
    peaks, low, high, tracking_peak = 0, float(contour[0]), float(contour[0]), False
    for value in contour[1:].tolist():
        if tracking_peak:
            if value > high:
                high = value
            elif high - value >= threshold:
                peaks, low, tracking_peak = peaks + (high >= floor), value, False
        elif value < low:
            low = value
        elif value - low >= threshold:
            high, tracking_peak = value, True
    return peaks
