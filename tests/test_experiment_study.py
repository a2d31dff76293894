"""Study files: every shipped study loads and validates, and mistakes fail before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cer.cli import main
from cer.config import ConfigError
from experiments.arms import arm_config, arm_family, variants
from experiments.cli import STUDIES_DIR
from experiments.study import load_study, study_from_mapping

SHIPPED = sorted(STUDIES_DIR.glob("*.yaml"))


def minimal(**changes) -> dict:
    study = {
        "name": "tiny",
        "output_dir": "runs/tiny",
        "data": {"kind": "folder", "source": "clips", "prepare": {"labels": "labels.csv"}},
        "seeds": [1, 2],
        "arms": [
            {
                "name": "words",
                "kind": "finetune",
                "modalities": "T",
                "config": {"model": "bundled-minilm", "num_train_epochs": 1},
            },
            {
                "name": "voice",
                "kind": "baseline",
                "modalities": "A",
                "config": {"arm": "unimodal", "epochs": 2},
            },
        ],
    }
    study.update(changes)
    return study


def test_every_shipped_study_loads_and_validates():
    assert {p.stem for p in SHIPPED} >= {
        "cexprdb_reference",
        "cexprdb_video_disjoint",
        "meld",
        "synthetic",
    }
    for path in SHIPPED:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == f"# cer experiment run configs/studies/{path.name}", path
        study = load_study(path)  # every arm's trainer config is built here
        assert study.arms and study.seeds
        assert study.reference_arm in study.arm_names


def test_real_dataset_studies_compare_the_same_arms_under_their_protocols():
    protocols = {}
    for name in ("meld", "cexprdb_reference", "cexprdb_video_disjoint"):
        study = load_study(STUDIES_DIR / f"{name}.yaml")
        protocols[name] = study.data.protocol
        kinds = {(a.kind, a.modalities) for a in study.arms}
        assert {
            ("finetune", "T"),
            ("finetune", "TA"),
            ("finetune", "TVA"),
            ("zeroshot", "TVA"),
        } <= kinds
        families = {a.name: arm_family(a, arm_config(study, a)) for a in study.arms}
        assert families["llama_TVA"] == "llama" and families["bert_T"] == "bert"
        assert {"fusion_early", "fusion_attention", "fusion_leader"} <= set(families)
        assert arm_config(study, study.arm("llama_TVA")).method == "qlora"
        # three BERT prompt variants, and the baselines read the full-modality one
        assert set(variants(study)) == {"paper-T", "paper-TA", "paper-TVA"}
    assert protocols == {
        "meld": "official",
        "cexprdb_reference": "reference-5fold",
        "cexprdb_video_disjoint": "video-disjoint",
    }


def test_arm_configs_get_the_study_data_seeds_and_offline_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = study_from_mapping(minimal())
    words, voice = (arm_config(study, a) for a in study.arms)

    # relative paths are resolved against the current directory
    assert study.output_dir == str(tmp_path / "runs" / "tiny")
    assert study.data.source == str(tmp_path / "clips")
    assert words.prompts == str(tmp_path / "runs/tiny/prompts/paper-T/fold{fold}/prompts.parquet")
    assert words.output_dir == str(tmp_path / "runs/tiny/arms/words")
    assert words.seeds == voice.seeds == (1, 2)
    assert words.splits == voice.splits == str(tmp_path / "runs/tiny/data/splits.parquet")
    assert Path(words.model, "config.json").is_file()  # bundled-minilm -> the package's folder
    assert words.training["num_train_epochs"] == 1
    assert voice.source == str(tmp_path / "runs/tiny/prompts/paper-TVA/fold{fold}")
    assert (voice.arm, voice.modalities, voice.epochs) == ("unimodal", "A", 2)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"arm_list": []}, "unknown key(s) in study: arm_list"),
        ({"seeds": []}, "seeds must list at least one seed"),
        ({"reference_arm": "nope"}, "reference_arm 'nope' is not an arm"),
        ({"textualize": {"modalities": "TA"}}, "each arm's `modalities:`"),
        (
            {"data": {"kind": "meld", "source": "x", "protocol": "video-disjoint"}},
            "not offered for meld; use one of official",
        ),
        (
            {"data": {"kind": "cexprdb", "source": "x", "protocol": "leave-one-out"}},
            "unknown protocol 'leave-one-out'",
        ),
        ({"data": {"kind": "tape", "source": "x"}}, "data.kind must be one of"),
    ],
)
def test_study_mistakes_are_named(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        study_from_mapping(minimal(**change))


def test_a_bad_arm_config_fails_up_front_naming_the_arm(tmp_path):
    arms = minimal()["arms"]
    arms[0]["config"]["learning_rat"] = 1e-3
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(minimal(arms=arms)))
    with pytest.raises(ConfigError, match="arm 'words'.*learning_rat"):
        load_study(path)

    arms = minimal()["arms"]
    arms[1]["config"]["seeds"] = [7]
    with pytest.raises(ConfigError, match="arm 'voice': seeds is set by the study"):
        study = study_from_mapping(minimal(arms=arms))
        arm_config(study, study.arms[1])

    arms = minimal()["arms"]
    arms[1]["modalities"] = "TX"
    with pytest.raises(ConfigError, match="arm 'voice': modalities must be letters"):
        study_from_mapping(minimal(arms=arms))


def test_cli_help_and_list_name_the_shipped_studies(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "run", "--help"])
    assert "--arms" in capsys.readouterr().out

    assert main(["experiment", "list"]) == 0
    listing = capsys.readouterr().out
    for path in SHIPPED:
        assert path.stem in listing and f"configs/studies/{path.name}" in listing


def test_cli_reports_a_bad_study_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(minimal(seeds=[])))
    assert main(["experiment", "run", str(path)]) == 2
    assert "seeds must list at least one seed" in capsys.readouterr().err


def test_allow_unavailable_is_a_documented_yes_or_no_key_of_an_arm():
    arms = minimal()["arms"]
    arms[0]["allow_unavailable"] = "yes"
    with pytest.raises(ConfigError, match="arm 'words': allow_unavailable must be true or false"):
        study_from_mapping(minimal(arms=arms))
    arms[0]["allow_unavailable"] = True
    assert study_from_mapping(minimal(arms=arms)).arm("words").allow_unavailable is True
    assert study_from_mapping(minimal()).arm("words").allow_unavailable is False


def test_an_arm_whose_face_was_never_extracted_is_refused_naming_the_study_key(tmp_path):
    """Three of four clips were textualized without py-feat weights: an arm reading the face
    would be scored on a modality it never saw."""
    import pandas as pd

    from experiments.arms import arm_coverage, coverage_refusal

    arms = minimal()["arms"]
    arms += [
        {"name": "face", "kind": "finetune", "modalities": "TV", "config": {"model": "m"}},
        {
            "name": "face_anyway",
            "kind": "finetune",
            "modalities": "TV",
            "allow_unavailable": True,
            "config": {"model": "m"},
        },
    ]
    study = study_from_mapping(minimal(arms=arms, output_dir=str(tmp_path / "study")))
    unavailable = "face model unavailable (py-feat Detectorv2 weights are not on disk)"
    prompts = pd.DataFrame(
        {
            "clip_id": ["a", "b", "c", "d"],
            "transcript": ["hi", "hello", "hey", "yo"],
            "transcript_status": "ok",
            "face_status": ["ok", "unavailable", "unavailable", "unavailable"],
            "face_reason": ["", unavailable, unavailable, unavailable],
            "prosody_status": "ok",
        }
    )
    for variant in ("paper-T", "paper-TV", "paper-TVA"):
        (study.study_dir / "prompts" / variant / "fold0").mkdir(parents=True)
        prompts.to_parquet(study.study_dir / "prompts" / variant / "fold0" / "prompts.parquet")

    coverage = arm_coverage(study, study.arm("face"))
    assert (coverage["T"].present, coverage["V"].present, coverage["V"].missing) == (4, 1, 3)
    refusal = coverage_refusal(study.arm("face"), coverage)
    assert refusal.startswith(
        f"arm 'face' uses TV, but V (face) was unavailable on 3 of 4 clips: {unavailable}"
    )
    assert "face_tables" in refusal and "`allow_unavailable: true`" in refusal
    assert "--" not in refusal  # a study is fixed in its file, not with a command-line flag
    assert (
        coverage_refusal(study.arm("face_anyway"), arm_coverage(study, study.arm("face_anyway")))
        is None
    )
    for name in ("words", "voice"):  # T and A were there on every clip
        assert coverage_refusal(study.arm(name), arm_coverage(study, study.arm(name))) is None
