"""The voice in graded words, against the speaker's own usual voice (the ``graded`` describer).

A person describing a voice compares it with how that person usually sounds: "a bit higher than
usual, much louder, faster". So every level word compares a clip's prosody summary
(textualize/prosody.py) with a **baseline**:

- the speaker's own: the median of each measure over that speaker's voiced clips. It uses no
  label (not even which takes are neutral), so a new speaker's baseline may come from all of
  their clips in the batch being rendered;
- else the typical voice of the clip's **register** (lower or higher voice, split by the clip's
  median pitch), fitted on the training clips or, with little data, the built-in one measured on
  real speech (textualize/builtin_voice_reference.py): a fallback that does not describe every
  female voice as "high pitch".

How far from the baseline a difference must be to earn "slightly", plain or "much" is not a fixed
z-score: the cut points are quantiles of the same differences over the training clips (by default
the 10th, 25th, 40th, 60th, 75th and 90th percentiles, so the seven levels have 10/15/15/20/15/15/10%
of the training clips), saved with the textualizer. Changes over the clip (pitch and loudness
rising or falling, where the voice peaks) use fixed thresholds in perceptual units (semitones,
doublings of loudness) that a reference file can change. The words name what was measured, never
an emotion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: Default quantiles of the training differences that separate the seven levels.
DEFAULT_QUANTILES = (0.10, 0.25, 0.40, 0.60, 0.75, 0.90)
MIN_BASELINE_CLIPS = 10  # a speaker needs this many voiced clips for their own baseline
MIN_CUT_CLIPS = 20  # fewer voiced training clips of a kind: the built-in cut points instead
SPEAKER, REGISTER = "speaker", "register"  # what a clip is compared with

#: Summary field, and how a clip differs from the baseline's value of it.
#: "diff": value - baseline (semitones, dB, a ratio); "log2": log2(value / baseline).
MEASURES: dict[str, tuple[str, str]] = {
    "pitch": ("pitch_median_st", "diff"),
    "intonation": ("pitch_range_st", "diff"),
    "loudness": ("loudness_speech", "log2"),
    "loudness_variation": ("loudness_variation", "diff"),
    "rate": ("articulation_rate", "log2"),
    "clarity": ("hnr_db", "diff"),
    "shakiness": ("jitter", "log2"),
    "roughness": ("shimmer_db", "diff"),
    "breathiness": ("h1_h2_db", "diff"),
    "brightness": ("alpha_ratio_db", "diff"),
}
BASELINE_FIELDS = tuple(sorted({name for name, _ in MEASURES.values()}))

#: (lower, higher) comparatives; "slightly"/"much" grade them. Speech measures first, then voice.
SPEECH_WORDS = {
    "pitch": ("lower pitch", "higher pitch"),
    "intonation": ("flatter intonation", "livelier intonation"),
    "loudness": ("quieter", "louder"),
    "loudness_variation": ("steadier loudness", "more varied loudness"),
    "rate": ("slower speech", "faster speech"),
}
VOICE_WORDS = {
    "clarity": ("hoarser", "clearer"),
    "shakiness": ("less shaky", "shakier"),
    "roughness": ("smoother", "rougher"),
    "breathiness": ("more pressed", "breathier"),
    "brightness": ("darker", "brighter"),
}
GRADES = ("much ", "", "slightly ")  # levels 0-2; 4-6 mirror them; 3 is "as usual"

#: Thresholds of the words about change over the clip (a reference file may override them).
DEFAULT_DYNAMICS = {
    # semitones, last third vs first third of voiced frames: rising/falling, then "sharply"
    "pitch_trend_st": (1.5, 4.0),
    "loudness_trend": (0.5, 1.0),  # log2 loudness, last third vs first third of the speech
    "long_pause_sec": 0.5,  # an inner pause at least this long is "long"
}


@dataclass(frozen=True)
class GradedReference:
    """Everything the graded words depend on beyond the clip: cut points and baselines."""

    quantiles: tuple[float, ...]
    cuts: dict[str, dict[str, tuple[float, ...]]]  # SPEAKER/REGISTER -> measure -> cut points
    registers: dict[str, dict[str, float]]  # "lower"/"higher" voice -> baseline value per field
    register_split_st: float  # median pitch (semitones from 27.5 Hz) between lower and higher
    # speaker -> baseline value per field
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    dynamics: dict[str, object] = field(default_factory=lambda: dict(DEFAULT_DYNAMICS))
    source: str = "builtin"

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "quantiles": list(self.quantiles),
            "cuts": {
                kind: {m: list(c) for m, c in cuts.items()} for kind, cuts in self.cuts.items()
            },
            "registers": self.registers,
            "register_split_st": self.register_split_st,
            "baselines": {spk: dict(v) for spk, v in sorted(self.baselines.items())},
            "dynamics": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.dynamics.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> GradedReference:
        dynamics = {**DEFAULT_DYNAMICS, **data.get("dynamics", {})}
        return cls(
            quantiles=tuple(float(q) for q in data["quantiles"]),
            cuts={
                str(kind): {str(m): tuple(float(x) for x in c) for m, c in cuts.items()}
                for kind, cuts in data["cuts"].items()
            },
            registers={
                str(r): {str(k): float(v) for k, v in b.items()}
                for r, b in data["registers"].items()
            },
            register_split_st=float(data["register_split_st"]),
            baselines={
                str(spk): {str(k): float(v) for k, v in b.items()}
                for spk, b in data.get("baselines", {}).items()
            },
            dynamics={k: tuple(v) if isinstance(v, list) else v for k, v in dynamics.items()},
            source=str(data.get("source", "builtin")),
        )

    def baseline_for(
        self, summary: Mapping, speaker: str | None
    ) -> tuple[str, str, dict[str, float]]:
        """(kind, lead-in words, baseline values): the speaker's own, else the clip's register."""
        if speaker and speaker in self.baselines:
            return SPEAKER, "compared with the speaker's usual voice", self.baselines[speaker]
        register = register_of(summary, self.register_split_st)
        return REGISTER, f"compared with typical {register} voices", self.registers[register]


def register_of(summary: Mapping, split_st: float) -> str:
    pitch = summary.get("pitch_median_st")
    return "higher" if pitch is not None and math.isfinite(pitch) and pitch >= split_st else "lower"


def measure_scores(summary: Mapping, baseline: Mapping[str, float]) -> dict[str, float | None]:
    """How the clip differs from the baseline, per measure (None where either is unknown)."""
    scores: dict[str, float | None] = {}
    for measure, (name, how) in MEASURES.items():
        value, base = summary.get(name), baseline.get(name)
        if value is None or base is None or not (math.isfinite(value) and math.isfinite(base)):
            scores[measure] = None
        elif how == "log2":
            scores[measure] = math.log2(value / base) if value > 0 and base > 0 else None
        else:
            scores[measure] = value - base
    return scores


def median_baseline(summaries: Iterable[Mapping]) -> dict[str, float]:
    """Median of every baseline field over voiced summaries (fields nobody has are left out)."""
    rows = list(summaries)
    out = {}
    for name in BASELINE_FIELDS:
        values = np.array([r[name] for r in rows if r.get(name) is not None], dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            out[name] = float(np.median(values))
    return out


def speaker_baselines(
    summaries: Iterable[tuple[str | None, Mapping]], min_clips: int = MIN_BASELINE_CLIPS
) -> dict[str, dict[str, float]]:
    """Each speaker's median voice over their voiced clips (speakers with ``min_clips`` or more)."""
    groups: dict[str, list[Mapping]] = {}
    for speaker, summary in summaries:
        if speaker and not summary.get("silent"):
            groups.setdefault(speaker, []).append(summary)
    return {spk: median_baseline(rows) for spk, rows in groups.items() if len(rows) >= min_clips}


def fit_graded_reference(
    summaries: Iterable[tuple[str | None, Mapping]],
    builtin: GradedReference,
    *,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
    source: str = "dataset",
) -> GradedReference:
    """Fit cut points (and register baselines) on the training clips' (speaker, summary) pairs.

    ``baselines``: per-speaker baselines to describe speakers against (empty: every clip against
    its register). Register baselines come from the training clips of each register when it has
    MIN_CUT_CLIPS of them, else from ``builtin``; so do the cut points of each kind of comparison.
    """
    voiced = [(spk, s) for spk, s in summaries if not s.get("silent")]
    baselines = {spk: dict(b) for spk, b in (baselines or {}).items()}
    split = builtin.register_split_st
    registers = {}
    for register, base in builtin.registers.items():
        own = [s for _, s in voiced if register_of(s, split) == register]
        registers[register] = (
            {**base, **median_baseline(own)} if len(own) >= MIN_CUT_CLIPS else dict(base)
        )
    partial = GradedReference(quantiles, {}, registers, split, baselines, builtin.dynamics, source)
    scores: dict[str, dict[str, list[float]]] = {SPEAKER: {}, REGISTER: {}}
    counts = {SPEAKER: 0, REGISTER: 0}
    for speaker, summary in voiced:
        kind, _, baseline = partial.baseline_for(summary, speaker)
        counts[kind] += 1
        for measure, score in measure_scores(summary, baseline).items():
            if score is not None:
                scores[kind].setdefault(measure, []).append(score)
    cuts = {}
    for kind in (SPEAKER, REGISTER):
        fallback = builtin.cuts.get(kind) or builtin.cuts[SPEAKER]
        cuts[kind] = {
            measure: tuple(float(c) for c in np.quantile(scores[kind][measure], quantiles))
            if counts[kind] >= MIN_CUT_CLIPS and len(scores[kind].get(measure, ())) >= MIN_CUT_CLIPS
            else _requantile(fallback[measure], builtin.quantiles, quantiles)
            for measure in MEASURES
        }
    return GradedReference(quantiles, cuts, registers, split, baselines, builtin.dynamics, source)


def _requantile(
    cuts: tuple[float, ...], have: tuple[float, ...], want: tuple[float, ...]
) -> tuple[float, ...]:
    """Cut points at other quantiles, interpolated between the ones a reference has."""
    if tuple(have) == tuple(want):
        return tuple(cuts)
    return tuple(float(x) for x in np.interp(want, have, cuts))


def level_of(score: float, cuts: tuple[float, ...]) -> int:
    """0 (much lower) ... len(cuts) (much higher); the middle level is "as usual".

    A score must pass a cut point strictly to leave the middle, so a measure that never varied in
    training (all cut points equal) reads "as usual" at its usual value.
    """
    middle = len(cuts) // 2
    above = sum(score > c for c in cuts[middle:])
    below = sum(score < c for c in cuts[:middle])
    return middle + above - below


def graded_phrase(level: int, words: tuple[str, str], levels: int = 7) -> str | None:
    middle = levels // 2
    if level == middle:
        return None
    if level < middle:
        return GRADES[min(level, len(GRADES) - 1)] + words[0]
    return GRADES[min(levels - 1 - level, len(GRADES) - 1)] + words[1]


def voice_scores(
    summary: Mapping, reference: GradedReference, speaker: str | None
) -> dict[str, float | None]:
    """The numbers behind the words: differences from the baseline and changes over the clip."""
    _, _, baseline = reference.baseline_for(summary, speaker)
    out = measure_scores(summary, baseline)
    for name in (
        "pitch_trend_st",
        "loudness_trend",
        "pitch_peak_pos",
        "loudness_peak_pos",
        "inner_pauses",
        "inner_pause_sec",
    ):
        out[name] = summary.get(name)
    return out


def describe_voice(summary: Mapping, reference: GradedReference, speaker: str | None = None) -> str:
    """E.g. "compared with the speaker's usual voice: slightly higher pitch, much louder, faster
    speech; no pauses; pitch falling toward the end, loudest at the start; voice: clearer, brighter"."""
    if summary.get("silent"):
        return "silence, no voice activity"
    kind, lead, baseline = reference.baseline_for(summary, speaker)
    scores = measure_scores(summary, baseline)
    cuts = reference.cuts.get(kind) or reference.cuts[SPEAKER]
    levels = len(reference.quantiles) + 1

    def phrases(table: Mapping[str, tuple[str, str]]) -> list[str]:
        out = []
        for measure, words in table.items():
            score = scores.get(measure)
            if score is not None and measure in cuts:
                phrase = graded_phrase(level_of(score, cuts[measure]), words, levels)
                if phrase:
                    out.append(phrase)
        return out

    speech = phrases(SPEECH_WORDS)
    parts = [f"{lead}: " + (", ".join(speech) if speech else "pitch, loudness and speed as usual")]
    parts.append(_pause_words(summary, float(reference.dynamics["long_pause_sec"])))
    changes = _change_words(summary, reference.dynamics)
    if changes:
        parts.append(", ".join(changes))
    voice = phrases(VOICE_WORDS)
    if voice:
        parts.append("voice: " + ", ".join(voice))
    return "; ".join(parts)


def _pause_words(summary: Mapping, long_sec: float) -> str:
    count = int(summary.get("inner_pauses") or 0)
    total = float(summary.get("inner_pause_sec") or 0.0)
    if count == 0:
        return "no pauses"
    size = "long" if total / count >= long_sec else "short"
    if count == 1:
        return f"one {size} pause"
    return f"{'a few' if count <= 3 else 'many'} {size} pauses"


def _change_words(summary: Mapping, dynamics: Mapping) -> list[str]:
    words = []
    trend = summary.get("pitch_trend_st")
    if trend is not None:
        some, sharp = dynamics["pitch_trend_st"]
        if abs(trend) >= some:
            way = "rising" if trend > 0 else "falling"
            words.append(f"pitch {way}{' sharply' if abs(trend) >= sharp else ''} toward the end")
        else:
            words.append("level pitch")
    trend = summary.get("loudness_trend")
    if trend is not None:
        some, much = dynamics["loudness_trend"]
        if trend <= -some:
            words.append(
                "trailing off at the end" if trend <= -much else "getting quieter toward the end"
            )
        elif trend >= some:
            words.append(f"getting {'much ' if trend >= much else ''}louder toward the end")
    for name, what in (("pitch_peak_pos", "highest pitch"), ("loudness_peak_pos", "loudest")):
        where = summary.get(name)
        if where is not None:
            part = (
                "at the start"
                if where < 1 / 3
                else "in the middle"
                if where < 2 / 3
                else "at the end"
            )
            words.append(f"{what} {part}")
    return words
