"""Config of `cer finetune`: flat YAML split between our options and TrainingArguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cer.config import ConfigError
from finetune.classify import training_arguments
from finetune.config import config_from_mapping, flat_mapping, load_config, save_resolved

CONFIGS = sorted(Path(__file__).parents[1].glob("configs/finetune/*.yaml"))


def test_flat_yaml_splits_our_options_from_training_arguments(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: some/encoder\nmethod: lora\nlearning_rate: 2.0e-4\nlora_r: 4\n")
    config = load_config(path, num_train_epochs=1)
    assert config.model == "some/encoder" and config.lora_r == 4
    assert config.training == {"learning_rate": 2e-4, "num_train_epochs": 1}
    args = training_arguments(config, tmp_path, seed=7, has_val=True)
    assert args.learning_rate == 2e-4 and args.seed == 7
    assert args.train_sampling_strategy == "group_by_length"
    assert args.metric_for_best_model == "macro_f1" and args.load_best_model_at_end


def test_unknown_key_is_an_error_that_names_it(tmp_path):
    with pytest.raises(ConfigError, match="learning_rat"):
        config_from_mapping({"learning_rat": 1e-4})
    with pytest.raises(ConfigError, match="method.*must be one of full, lora, qlora"):
        config_from_mapping({"method": "qlora4"})


def test_family_lora_defaults_are_overridable():
    config = config_from_mapping({"lora_alpha": 64})
    assert config.lora_settings("encoder") == (8, 64, 0.1, ("query", "value"))
    assert "down_proj" in config.lora_settings("decoder")[3]


def test_resolved_config_round_trips(tmp_path):
    config = config_from_mapping({"model": "m", "seeds": [1, 2], "weight_decay": 0.01})
    save_resolved(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert flat_mapping(config)["weight_decay"] == 0.01


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_its_command(path):
    assert path.read_text().startswith("# ")
    assert "finetune" in path.read_text().splitlines()[0]
    load_config(path)


def test_help_is_quick_and_lists_training_flags():
    out = subprocess.run(
        [sys.executable, "-m", "cer.cli", "finetune", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--learning-rate" in out and "--text-column" in out and "--method" in out
    assert (
        "predict"
        in subprocess.run(
            [sys.executable, "-m", "cer.cli", "finetune", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def test_cli_reports_bad_input_as_an_error_message(tmp_path, capsys):
    from cer.cli import main

    assert main(["finetune", "train", "--prompts", str(tmp_path / "none.parquet")]) == 2
    assert "prompts file not found" in capsys.readouterr().err
