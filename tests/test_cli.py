"""Every `cer` command explains itself, quickly, without importing the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cer.cli import build_parser
from cer.command_line import walk

COMMANDS = [words for words, _ in walk(build_parser())]


def test_all_capabilities_are_registered():
    top = {c[0] for c in COMMANDS if len(c) == 1}
    assert {"textualize", "data", "finetune", "baseline"} <= top


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "cer")
def test_help_works_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cer" in capsys.readouterr().out


def test_help_is_instant_and_imports_no_model_library():
    code = (
        "import sys; from cer.cli import main\ntry:\n main(['textualize', '--help'])\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'feat', 'faster_whisper', 'opensmile') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout
    assert "HEAVY []" in out


def test_textualize_flags_document_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["textualize", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--whisper-model",
        "--face",
        "--template",
        "--modalities",
        "--window",
        "--force",
        "--strict",
        "--workers",
        "--face-tables",
        "--prosody-reference",
    ):
        assert flag in text


def test_unknown_config_key_is_an_error(tmp_path):
    (tmp_path / "c.yaml").write_text("templat: paper\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cer",
            "textualize",
            "in",
            "out",
            "--config",
            str(tmp_path / "c.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        result.returncode == 2
        and "unknown option(s)" in result.stderr
        and "templat" in result.stderr
    )


def test_every_shipped_textualize_config_loads_and_names_its_command():
    from pathlib import Path

    from cer.config import from_mapping, load_yaml
    from textualize.config import TextualizeConfig

    configs = sorted((Path(__file__).parents[1] / "configs" / "textualize").glob("*.yaml"))
    assert configs
    for path in configs:
        assert path.read_text().startswith("# cer textualize "), path
        from_mapping(TextualizeConfig, load_yaml(path), source=str(path))


def test_yaml_on_off_and_choices_are_validated(tmp_path):
    from cer.config import ConfigError, from_mapping, load_yaml
    from textualize.config import TextualizeConfig

    (tmp_path / "c.yaml").write_text("face: on\nprosody: off\n")
    cfg = from_mapping(TextualizeConfig, load_yaml(tmp_path / "c.yaml"))
    assert (cfg.face, cfg.prosody) == ("on", False)
    with pytest.raises(ConfigError, match="face_detector .* must be one of"):
        from_mapping(TextualizeConfig, {"face_detector": "Detector3"})
