"""One command line: every `cer` command follows the same conventions (cer/command_line.py).

Examples in each `--help`, `--version`, suggestions for misspelt flags, subcommands, choices and
config keys, booleans as --flag / --no-flag, space-separated lists, -v / -q everywhere, and
every flag that a help text, a shipped config or an error message tells the user to type exists.
"""

from __future__ import annotations

import ast
import logging
import re
import shlex
import sys
from pathlib import Path

import pytest

from cer.cli import build_parser, main
from cer.command_line import walk

ROOT = Path(__file__).resolve().parents[1]
PARSERS = {words: parser for words, parser in walk(build_parser())}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*(?![\w-])")


def _id(words):
    return " ".join(("cer", *words))


def _all_flags() -> set[str]:
    return {s for p in PARSERS.values() for s in p._option_string_actions}


def _parses(command: str) -> None:
    """Parse an example command line as the shell would pass it, without running it."""
    words = shlex.split(command.split(" | ")[0], comments=True)
    assert words[0] == "cer", command
    build_parser().parse_args(words[1:])


@pytest.mark.parametrize("words", list(PARSERS), ids=_id)
def test_every_help_ends_with_two_or_three_examples_that_parse(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*words, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    examples = PARSERS[words].examples
    assert 2 <= len(examples) <= 3, _id(words)
    block = text.rstrip().split("\nexamples:\n")[-1].splitlines()
    assert [line.strip() for line in block] == list(examples)  # the last thing in the help
    for example in examples:
        _parses(example)


@pytest.mark.parametrize("words", list(PARSERS), ids=_id)
def test_every_command_takes_verbose_and_quiet(words):
    assert {"-v", "--verbose", "-q", "--quiet"} <= set(PARSERS[words]._option_string_actions)


def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"cer {version('cer-textualize')}"


@pytest.mark.parametrize(
    "argv, said",
    [
        (["textualize", "in", "out", "--modalites", "TA"], "did you mean --modalities?"),
        (["experiment", "run", "s.yaml", "--arm", "bert_T"], "did you mean --arms?"),
        (["baseline", "train", "--seed", "1"], "did you mean --seeds?"),
        (["data", "prepare", "meld", "r", "o", "--context-turn", "2"], "--context-turns?"),
        (["finetune", "train", "--learning-rat", "1e-4"], "did you mean --learning-rate?"),
        (["textualise", "in", "out"], "did you mean 'textualize'?"),
        (["finetune", "train", "--mode", "clasify"], "did you mean 'classify'?"),
        (["data", "prepare", "meldd", "r", "o"], "did you mean 'meld'?"),
    ],
)
def test_a_misspelt_flag_or_word_names_the_real_one_with_the_commands_usage(argv, said, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err  # the usage line and one error line
    command = " ".join(["cer", *(w for w in argv[:3] if w in _command_words())])
    assert err[0].startswith(f"usage: {command} ")
    assert err[1].startswith(f"{command}: error: ") and said in err[1]


def _command_words() -> set[str]:
    return {w for words in PARSERS for w in words}


def test_an_abbreviation_is_not_silently_taken_for_the_option():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["experiment", "run", "s.yaml", "--arm", "bert_T"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "train", "--learning", "1e-4"])


def test_booleans_are_flag_and_no_flag_and_still_read_yaml_words():
    parse = build_parser().parse_args
    assert parse(["textualize", "a", "b", "--no-transcript"]).transcript is False
    assert parse(["textualize", "a", "b", "--transcript", "false"]).transcript is False
    assert parse(["textualize", "a", "b", "--progress=off"]).progress is False
    assert parse(["textualize", "--force", "a", "b"]).force is True  # not read as its value
    assert (parse(["textualize", "--force", "a", "b"]).source) == "a"
    assert parse(["baseline", "train", "--no-resume"]).resume is False
    assert parse(["finetune", "train", "--resume"]).resume is True
    assert parse(["experiment", "run", "s.yaml", "--force"]).force is True
    assert parse(["experiment", "run", "s.yaml", "--no-force"]).force is False
    assert getattr(parse(["finetune", "train", "--bf16"]), "training.bf16") is True
    assert "resume" not in vars(parse(["baseline", "train"]))  # unset: the YAML or default decides


def test_lists_are_space_separated_everywhere():
    parse = build_parser().parse_args
    assert parse(["finetune", "train", "--seeds", "1", "2", "3"]).seeds == [1, 2, 3]
    assert parse(["baseline", "train", "--folds", "0", "1"]).folds == [0, 1]
    assert parse(["experiment", "run", "s.yaml", "--arms", "a", "b"]).arms == ["a", "b"]


def test_baseline_and_finetune_name_their_input_prompts(tmp_path):
    from cer.config import from_mapping, resolve
    from featurebaseline.config import BaselineConfig

    args = build_parser().parse_args(["baseline", "train", "--prompts", "runs/t"])
    assert resolve(BaselineConfig, args).source == "runs/t"
    legacy = build_parser().parse_args(["baseline", "train", "--source", "runs/t"])
    assert resolve(BaselineConfig, legacy).source == "runs/t"
    assert from_mapping(BaselineConfig, {"prompts": "runs/t"}).source == "runs/t"
    for command in (["finetune", "predict"], ["baseline", "predict"]):
        args = build_parser().parse_args([*command, "RUN", "new.parquet", "--output-dir", "out"])
        assert (args.prompts, args.output_dir) == ("new.parquet", "out")


def test_a_misspelt_config_key_names_the_real_one(tmp_path):
    from cer.config import ConfigError, from_mapping
    from featurebaseline.config import BaselineConfig
    from finetune.config import config_from_mapping
    from textualize.config import TextualizeConfig

    with pytest.raises(ConfigError, match=r"templat \(did you mean template\?\)"):
        from_mapping(TextualizeConfig, {"templat": "paper"})
    with pytest.raises(ConfigError, match=r"modalites \(did you mean modalities\?\)"):
        from_mapping(BaselineConfig, {"modalites": "T"})
    with pytest.raises(ConfigError, match=r"did you mean learning_rate\?"):
        config_from_mapping({"learning_rat": 1e-4})


def test_verbose_and_quiet_set_the_log_level_of_the_command_only(tmp_path, capsys):
    seen = {}

    def record(args):
        seen["level"] = logging.getLogger("data_cards").getEffectiveLevel()
        return 0

    parser_module = sys.modules["data_cards.cli"]
    original = parser_module._run_card
    try:
        parser_module._run_card = record
        before = logging.getLogger("data_cards").level
        for flag, level in (("-v", logging.INFO), ("-q", logging.ERROR), (None, logging.WARNING)):
            assert main(["data", "card", *([flag] if flag else [])]) == 0
            assert seen["level"] == level
            assert logging.getLogger("data_cards").level == before  # put back afterwards
    finally:
        parser_module._run_card = original


def test_an_unknown_action_is_a_usage_error_and_a_bare_group_prints_its_help(capsys):
    for argv in (["finetune"], ["data"], ["experiment"], []):
        assert main(argv) == 2
        assert "usage: cer" in capsys.readouterr().err


# --- every flag that the user is told to type exists


def _config_headers():
    for path in sorted((ROOT / "configs").glob("*/*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines()[:3]:
            text = line.lstrip("#( ").removeprefix("or: ").rstrip(")")
            if text.startswith("cer "):
                yield path.relative_to(ROOT), text


@pytest.mark.parametrize("name, command", list(_config_headers()), ids=str)
def test_every_shipped_config_header_command_parses(name, command):
    _parses(re.sub(r'"\$\(.*\)"', "DIR", command))


def test_readme_commands_parse():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [
        ln
        for ln in re.findall(r"^cer .*$", text, flags=re.MULTILINE)
        if not ln.rstrip().endswith("\\")
    ]
    assert len(commands) >= 10
    for command in commands:
        _parses(command)


def _string_constants(path: Path):
    """String literals of a module, docstrings left out (they describe, they do not instruct)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.value


#: Flags of other programs that our messages and help legitimately mention.
OTHER_PROGRAMS = {
    "--multi-gpu",  # accelerate launch
    "--num-processes",
    "--no-deps",  # pip install
    "--head",  # ray start
    "--flag",  # the convention itself, in `cer --help`
    "--no-flag",
}


def test_every_flag_named_in_messages_and_help_exists():
    """Error messages and help say `--flag`: each must be an option of some `cer` command."""
    known = _all_flags() | OTHER_PROGRAMS
    packages = ("cer", "data_cards", "textualize", "finetune", "featurebaseline", "experiments")
    missing = {}
    for package in packages:
        for path in (ROOT / package).glob("*.py"):
            for text in _string_constants(path):
                for flag in FLAG.findall(text):
                    if flag.replace("_", "-") not in known:
                        missing.setdefault(flag, str(path.relative_to(ROOT)))
    assert not missing, missing


def test_the_folder_command_points_at_card_keys_not_at_flags_it_lacks():
    from data_cards.cli import _as_card_keys

    message = _as_card_keys(
        "3 source videos are too few for 5 video-disjoint folds with a validation split; "
        "lower --folds (or raise --val-fraction)"
    )
    folder = PARSERS[("data", "prepare", "folder")]
    assert all(flag in folder._option_string_actions for flag in FLAG.findall(message))
    assert "folds:" in message and "val_fraction:" in message
