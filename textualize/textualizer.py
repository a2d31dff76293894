"""The fitted textualizer: what a prompt's words depend on beyond the clip itself, saved as a file.

"High pitch" means high against a prosody reference, and the instruction template lists the
label names; both come from a corpus, not from the clip. Like a tokenizer or a scaler, they are
fitted once, on the training clips (split ``train`` when any clip has a split, else every clip),
written beside the prompts as ``textualizer.json`` and read back to render new clips
(``cer textualize NEW OUT --reference PRIOR``), so that training and prediction prompts use the
same words for the same voice. The file also holds the template text, the modality subset and the
windows the prompts were rendered with, and what the textualizer was fitted on (split, counts and a
digest of the clip ids).

With the paper2024 describer, a speaker the textualizer has no statistics of (too few training
clips, or new) is described against its overall statistics, whatever the batch being rendered
holds: a clip's prompt depends only on the clip and the textualizer. With the graded describer
and ``prosody_reference: speaker``, a speaker is described against their own median voice, which
needs no label: fitted on the speaker's training clips when they have some, else on all of their
clips in the run (held-out speakers included), and for a new speaker in a ``--reference`` run on
their clips in that run (``with_new_speakers``). The cut points always come from training clips.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textualize.cache import atomic_write
from textualize.config import TextualizeConfig
from textualize.describe import (
    MIN_REFERENCE_CLIPS,
    ProsodyReference,
    build_prosody_reference,
)
from textualize.prompts import PromptRenderer, parse_modalities, template_source
from textualize.units import UnitFeatures
from textualize.voice_words import DEFAULT_QUANTILES, GradedReference, speaker_baselines

if TYPE_CHECKING:
    from textualize.extract import ExtractionPlan

log = logging.getLogger(__name__)

FILE_NAME = "textualizer.json"
FORMAT = "cer-textualizer"
VERSION = 2  # 2: the graded describer (prosody.describer, prosody.graded)
READABLE_VERSIONS = (1, 2)  # version 1 files were all written by the paper2024 describer
TRAIN_SPLIT = "train"  # the split value whose clips a textualizer is fitted on
#: What an unset rendering option means when there is no textualizer to take it from.
DEFAULTS = {"template": "paper", "modalities": "TVA", "describer": "graded"}
PROSODY_REFERENCE_DEFAULT = {"graded": "speaker", "paper2024": "dataset"}


class TextualizerError(ValueError):
    """A textualizer file is missing or unreadable, or options contradict it; the message says what to do."""


@dataclass(frozen=True)
class FittedOn:
    """Which clips a textualizer was fitted on: enough to check it without listing them all."""

    split: str | None  # "train", or None: every clip of the run (no clip had split "train")
    clips: int
    clip_ids_sha256: str  # see clip_digest
    labelled_clips: int
    voiced_units: int  # voiced prosody units among them (the overall statistics, unless builtin)
    speaker_units: dict[str, int]  # voiced units of each speaker that got their own statistics
    source: str  # the folder or manifest the fitting run read
    fitted_at: str


@dataclass(frozen=True)
class Textualizer:
    """Fitted rendering state; ``to_dict``/``from_dict`` give the versioned ``textualizer.json``."""

    template: str  # as it was asked for: a built-in name or a .j2 path
    template_id: str  # the prompts' ``template`` column, e.g. "paper" or "file:mine.j2"
    template_source: str  # the template text itself: editing the file later changes nothing here
    modalities: str  # letters in TVA order
    window: float | None
    hop: float | None
    labels: tuple[str, ...]
    prosody_reference: str  # what was asked: dataset, speaker or builtin
    prosody: ProsodyReference  # what it became, fallbacks included
    fitted_on: FittedOn
    extraction: dict[str, dict] = field(default_factory=dict)  # stage keys of the descriptors

    @property
    def describer(self) -> str:
        return self.prosody.describer

    def renderer(self) -> PromptRenderer:
        return PromptRenderer(
            self.template_id, self.modalities, self.labels, source=self.template_source
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "template": {
                "name": self.template,
                "id": self.template_id,
                "sha256": hashlib.sha256(self.template_source.encode("utf-8")).hexdigest(),
                "source": self.template_source,
            },
            "modalities": self.modalities,
            "window": self.window,
            "hop": self.hop,
            "labels": list(self.labels),
            "prosody": {
                "mode": self.prosody_reference,
                "min_clips": MIN_REFERENCE_CLIPS,
                **self.prosody.to_dict(),
            },
            "fitted_on": dataclasses.asdict(self.fitted_on),
            "extraction": _plain(self.extraction),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "textualizer") -> Textualizer:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise TextualizerError(f'{source} is not a textualizer file (no "format": "{FORMAT}")')
        if data.get("version") not in READABLE_VERSIONS:
            raise TextualizerError(
                f"{source} is textualizer format version {data.get('version')!r}; this cer reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))}: re-run cer textualize on the "
                "training clips to fit a new one"
            )
        try:
            template, prosody, fitted = data["template"], data["prosody"], data["fitted_on"]
            window, hop = data["window"], data["hop"]
            return cls(
                template=str(template["name"]),
                template_id=str(template["id"]),
                template_source=str(template["source"]),
                modalities=str(data["modalities"]),
                window=None if window is None else float(window),
                hop=None if hop is None else float(hop),
                labels=tuple(str(label) for label in data["labels"]),
                prosody_reference=str(prosody["mode"]),
                prosody=ProsodyReference.from_dict(prosody),
                fitted_on=FittedOn(**{**fitted, "speaker_units": dict(fitted["speaker_units"])}),
                extraction=dict(data.get("extraction", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise TextualizerError(
                f"{source} is not a valid textualizer file ({type(err).__name__}: {err})"
            ) from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, *, source: str = "textualizer") -> Textualizer:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise TextualizerError(f"{source} is not JSON ({err})") from err
        return cls.from_dict(data, source=source)

    def save(self, path: str | Path) -> None:
        atomic_write(Path(path), (self.to_json() + "\n").encode("utf-8"))

    @property
    def sha256(self) -> str:
        """Digest of the content (what downstream fingerprints can key on)."""
        return hashlib.sha256(
            json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")
        ).hexdigest()


def clip_digest(clip_ids: Iterable[str]) -> str:
    """SHA-256 of the sorted, newline-joined clip ids."""
    return hashlib.sha256("\n".join(sorted(clip_ids)).encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _modality_letters(spec: str) -> str:
    letters = parse_modalities(spec)
    return "".join(m for m in "TVA" if m in letters)


def load_textualizer(path: str | Path) -> Textualizer:
    """Read ``textualizer.json``, or the one in a ``cer textualize`` output folder."""
    path = Path(path)
    file = path / FILE_NAME if path.is_dir() else path
    if not path.exists():
        raise TextualizerError(
            f"--reference {path} does not exist: give a `cer textualize` output folder or its {FILE_NAME}"
        )
    if not file.is_file():
        raise TextualizerError(
            f"--reference {path} holds no {FILE_NAME} (not a `cer textualize` output folder, or one "
            "written before textualizers were saved): run cer textualize on the training clips to fit one"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TextualizerError(f"--reference {file} cannot be read ({err})") from err
    return Textualizer.from_json(text, source=f"--reference {file}")


def rendering_config(
    cfg: TextualizeConfig, textualizer: Textualizer | None = None
) -> TextualizeConfig:
    """``cfg`` with every unset rendering option filled in: from ``textualizer``, else the defaults.

    With a textualizer, an option set to something else than what it was fitted with is an error:
    the prompts would no longer be those of training time.
    """
    if textualizer is None:
        describer = cfg.describer or DEFAULTS["describer"]
        return dataclasses.replace(
            cfg,
            template=cfg.template or DEFAULTS["template"],
            modalities=_modality_letters(cfg.modalities or DEFAULTS["modalities"]),
            describer=describer,
            prosody_reference=cfg.prosody_reference or PROSODY_REFERENCE_DEFAULT[describer],
        )
    t = textualizer
    conflicts = []
    if cfg.describer is not None and cfg.describer != t.describer:
        conflicts.append(f"--describer {cfg.describer} (fitted: {t.describer})")
    fitted_quantiles = t.prosody.graded.quantiles if t.prosody.graded else ()
    if cfg.prosody_quantiles and tuple(cfg.prosody_quantiles) != tuple(fitted_quantiles):
        conflicts.append(
            f"--prosody-quantiles {' '.join(map(str, cfg.prosody_quantiles))} (fitted: "
            f"{' '.join(map(str, fitted_quantiles)) or 'none, paper2024'})"
        )
    if cfg.voice_reference is not None:
        conflicts.append(
            f"--voice-reference {cfg.voice_reference} (the textualizer holds its reference)"
        )
    if cfg.template is not None and template_source(cfg.template)[1] != t.template_source:
        conflicts.append(f"--template {cfg.template} (fitted: {t.template_id})")
    if cfg.modalities is not None and _modality_letters(cfg.modalities) != t.modalities:
        conflicts.append(f"--modalities {cfg.modalities} (fitted: {t.modalities})")
    if cfg.prosody_reference is not None and cfg.prosody_reference != t.prosody_reference:
        conflicts.append(
            f"--prosody-reference {cfg.prosody_reference} (fitted: {t.prosody_reference})"
        )
    window = cfg.window if cfg.window is not None else t.window
    hop = cfg.hop if cfg.hop is not None else t.hop if window == t.window else None
    if (window, hop or window) != (t.window, t.hop or t.window):
        fitted = f"{t.window} s windows, hop {t.hop or t.window} s" if t.window else "whole clips"
        conflicts.append(f"--window {cfg.window} --hop {cfg.hop} (fitted: {fitted})")
    if conflicts:
        raise TextualizerError(
            f"{'; '.join(conflicts)} contradict the textualizer {cfg.reference}: drop these options to "
            "render as at training time, or leave out --reference to fit a new textualizer"
        )
    return dataclasses.replace(
        cfg,
        template=t.template,
        modalities=t.modalities,
        prosody_reference=t.prosody_reference,
        describer=t.describer,
        window=window,
        hop=hop,
    )


def extraction_identity(plan: ExtractionPlan) -> dict[str, dict]:
    """The identities of the descriptor stages ``plan`` runs (``plan.keys``, which holds a key
    for each stage that runs), and where the faces come from."""
    out = {s: dict(key) for s, key in plan.keys.items() if s not in ("media", "face")}
    if plan.face != "off":
        out["face"] = {**plan.keys.get("face", {}), "source": plan.face}
    return _plain(out)


def fit_textualizer(
    units: Sequence[UnitFeatures],
    cfg: TextualizeConfig,
    extraction: Mapping[str, dict],
    source: str,
) -> Textualizer:
    """Fit on the training units: split ``train`` when any clip has that split, else all of them."""
    cfg = rendering_config(cfg)
    splits = {u.clip.split for u in units if u.clip.split}
    if TRAIN_SPLIT in splits:
        fitting, split = [u for u in units if u.clip.split == TRAIN_SPLIT], TRAIN_SPLIT
    else:
        if splits:
            log.warning(
                "no clip has split %r (splits: %s): the textualizer is fitted on all %d units; to "
                "render held-out clips with training statistics, use --reference",
                TRAIN_SPLIT,
                ", ".join(sorted(splits)),
                len(units),
            )
        fitting, split = list(units), None
    summaries = [(u.clip.speaker, u.prosody) for u in fitting if u.prosody is not None]
    reference = build_prosody_reference(
        summaries,
        cfg.prosody_reference,
        cfg.describer,
        baseline_summaries=_baseline_summaries(units, fitting),
        quantiles=tuple(cfg.prosody_quantiles) or DEFAULT_QUANTILES,
        builtin=load_voice_reference(cfg.voice_reference) if cfg.voice_reference else None,
    )
    voiced = [spk for spk, s in summaries if not s.get("silent")]
    clips = {u.clip.clip_id: u.clip for u in fitting}
    template_id, text = template_source(cfg.template)
    return Textualizer(
        template=cfg.template,
        template_id=template_id,
        template_source=text,
        modalities=cfg.modalities,
        window=cfg.window,
        hop=cfg.hop,
        labels=tuple(sorted({c.label for c in clips.values() if c.label})),
        prosody_reference=cfg.prosody_reference,
        prosody=reference,
        fitted_on=FittedOn(
            split=split,
            clips=len(clips),
            clip_ids_sha256=clip_digest(clips),
            labelled_clips=sum(1 for c in clips.values() if c.label),
            voiced_units=len(voiced),
            speaker_units={
                spk: voiced.count(spk) for spk in sorted(_described_speakers(reference))
            },
            source=source,
            fitted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ),
        extraction=_plain(dict(extraction)),
    )


def _described_speakers(reference: ProsodyReference) -> set[str]:
    """Speakers described against their own voice (graded baselines or paper2024 statistics)."""
    return set(reference.graded.baselines) if reference.graded else set(reference.by_speaker)


def _baseline_summaries(units: Sequence[UnitFeatures], fitting: Sequence[UnitFeatures]) -> list:
    """(speaker, summary) pairs that speaker baselines come from: a speaker's fitting units when
    they have some (so held-out clips never move training prompts), else all of their units."""
    fitting_ids = {id(u) for u in fitting}
    fitted = {u.clip.speaker for u in fitting if u.clip.speaker}
    return [
        (u.clip.speaker, u.prosody)
        for u in units
        if u.prosody is not None
        and u.clip.speaker
        and (id(u) in fitting_ids or u.clip.speaker not in fitted)
    ]


def with_new_speakers(textualizer: Textualizer, units: Sequence[UnitFeatures]) -> Textualizer:
    """``textualizer`` with baselines for the speakers of ``units`` it has none for (graded,
    speaker mode): their median voice over these units, which needs no label. Other
    textualizers, and speakers it knows, are left as they are."""
    graded = textualizer.prosody.graded
    if graded is None or textualizer.prosody_reference != "speaker":
        return textualizer
    new = speaker_baselines(
        (u.clip.speaker, u.prosody)
        for u in units
        if u.prosody is not None and u.clip.speaker and u.clip.speaker not in graded.baselines
    )
    if not new:
        return textualizer
    graded = dataclasses.replace(graded, baselines={**graded.baselines, **new})
    prosody = dataclasses.replace(textualizer.prosody, graded=graded)
    log.info(
        "%d new speaker(s) described against their own voice in this run: %s",
        len(new),
        ", ".join(sorted(new)[:10]),
    )
    return dataclasses.replace(textualizer, prosody=prosody)


def load_voice_reference(path: str | Path) -> GradedReference:
    """A graded describer reference written by benchmarks/fit_prosody_reference.py."""
    try:
        return GradedReference.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError as err:
        raise TextualizerError(f"--voice-reference {path} does not exist") from err
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise TextualizerError(
            f"--voice-reference {path} is not a voice reference written by "
            f"benchmarks/fit_prosody_reference.py ({type(err).__name__}: {err})"
        ) from err


def rendering_notes(
    textualizer: Textualizer,
    units: Sequence[UnitFeatures],
    extraction: Mapping[str, dict] | None = None,
) -> dict[str, list[str]]:
    """What in this run the textualizer does not cover (for run.json); warns about what matters.

    ``extraction``: this run's stage keys, to compare with the fitted ones (for a loaded textualizer).
    """
    t = textualizer
    labels = sorted({u.clip.label for u in units if u.clip.label and u.clip.label not in t.labels})
    if labels:
        log.warning(
            "labels not in the textualizer's label list (prompts do not offer them): %s",
            ", ".join(labels),
        )
    speakers: list[str] = []
    if t.prosody_reference == "speaker":
        speakers = sorted(
            {u.clip.speaker for u in units if u.clip.speaker} - _described_speakers(t.prosody)
        )
        if speakers:
            log.info(
                "%d speaker(s) without their own prosody statistics are described against the "
                "overall ones: %s",
                len(speakers),
                ", ".join(speakers[:10]),
            )
    differs: list[str] = []
    if extraction is not None:
        now = _plain(dict(extraction))
        differs = sorted(
            s for s in set(now) | set(t.extraction) if now.get(s) != t.extraction.get(s)
        )
        if differs:
            log.warning(
                "descriptors computed with other settings than the textualizer's training "
                "run (stages: %s): the words may differ from training time",
                ", ".join(differs),
            )
    return {
        "labels_not_in_textualizer": labels,
        "speakers_against_overall_reference": speakers,
        "extraction_differs": differs,
    }
