"""The conventions every `cer` command shares, implemented once on top of argparse.

``CommandParser`` is the parser class of ``cer`` and, through argparse's ``parser_class``, of
every subcommand, so each command gets the same behaviour without asking for it:

- no abbreviations: ``--arm`` is an error, never silently ``--arms``;
- an unknown or misspelt option prints that command's usage line and one error line that
  suggests the closest real option (``did you mean --modalities?``), exit status 2;
- a misspelt subcommand or choice suggests the closest real one;
- ``-v/--verbose`` and ``-q/--quiet`` (log level INFO / ERROR; see ``log_level``);
- booleans are ``--flag`` / ``--no-flag``; ``--flag true|false`` (the YAML spelling) is still
  read, as is ``--flag=false``;
- ``examples=[...]`` ends the command's ``--help`` with an ``examples:`` block.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from collections.abc import Iterable, Sequence

#: Spellings of a boolean value accepted after a ``--flag`` (as in YAML and ``cer.config``).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

#: Loggers of this project; ``-v`` / ``-q`` set their level, third-party loggers stay at WARNING.
PROJECT_LOGGERS = (
    "cer",
    "data_cards",
    "textualize",
    "finetune",
    "featurebaseline",
    "experiments",
    "evaluation",
)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a misspelt ``word``, or None when none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


class HelpFormatter(argparse.HelpFormatter):
    """Refill prose paragraphs, but keep indented lines (examples) and ``heading:`` lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        prose: list[str] = []

        def flush() -> None:
            if prose:
                out.append(super(HelpFormatter, self)._fill_text(" ".join(prose), width, indent))
                prose.clear()

        for line in text.splitlines():
            if not line.strip():
                flush()
                out.append("")
            elif line.startswith(" ") or (line.rstrip().endswith(":") and len(line.split()) <= 3):
                flush()
                out.append(indent + line.rstrip())
            else:
                prose.append(line.strip())
        flush()
        return "\n".join(out)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with the shared conventions; see the module docstring."""

    def __init__(self, *args, examples: Sequence[str] = (), **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        if examples:
            block = "examples:\n" + "\n".join(f"  {line}" for line in examples)
            epilog = kwargs.get("epilog")
            kwargs["epilog"] = f"{epilog.rstrip()}\n\n{block}" if epilog else block
        super().__init__(*args, **kwargs)
        self.examples = tuple(examples)
        self.register("action", "parsers", _SubcommandsAction)
        if self.add_help:
            loudness = self.add_mutually_exclusive_group()
            loudness.add_argument(
                "-v",
                "--verbose",
                dest="log_level",
                action="store_const",
                const=logging.INFO,
                default=argparse.SUPPRESS,
                help="log what each step does (level INFO)",
            )
            loudness.add_argument(
                "-q",
                "--quiet",
                dest="log_level",
                action="store_const",
                const=logging.ERROR,
                default=argparse.SUPPRESS,
                help="log errors only",
            )

    # --- parsing

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self._bool_values_as_flags(args), namespace)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.reject(extras)
        return namespace

    def _bool_values_as_flags(self, args: list[str]) -> list[str]:
        """``--flag false`` / ``--flag=false`` -> ``--no-flag``; ``--flag true`` -> ``--flag``."""
        flags = {
            s
            for a in self._actions
            if isinstance(a, argparse.BooleanOptionalAction)
            for s in a.option_strings
            if not s.startswith("--no-")
        }
        if not flags:
            return args
        out: list[str] = []
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                out.extend(args[i:])
                break
            name, eq, value = token.partition("=")
            if name in flags and not eq and i + 1 < len(args):
                value = args[i + 1].lower()
                if value in TRUE_WORDS | FALSE_WORDS:
                    i += 1
                else:
                    value = "true"
            if name in flags and (eq or value):
                word = value.lower()
                if word not in TRUE_WORDS | FALSE_WORDS:
                    self.error(f"argument {name}: expected true or false, got {value!r}")
                token = name if word in TRUE_WORDS else "--no-" + name[2:]
            out.append(token)
            i += 1
        return out

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            message = f"invalid choice: {value!r} (choose from {', '.join(choices)})"
            guess = closest(str(value), choices)
            if guess:
                message += f"; did you mean {guess!r}?"
            raise argparse.ArgumentError(action, message)

    # --- errors

    def reject(self, extras: list[str]) -> None:
        """Error for arguments this command does not take, naming the closest real option."""
        flags = [e for e in extras if e.startswith("-") and e != "-"]
        if not flags:
            self.error(f"unrecognized argument(s): {' '.join(extras)}")
        name = flags[0].split("=", 1)[0]
        guess = closest(name, self.option_names())
        hint = f"did you mean {guess}?" if guess else f"`{self.prog} --help` lists every option"
        self.error(f"unrecognized option {name}; {hint}")

    def option_names(self) -> list[str]:
        return [s for s in self._option_string_actions if s.startswith("--")]

    def short_usage(self) -> str:
        formatter = self._get_formatter()
        parts = [f"usage: {self.prog}", "[options]"]
        for action in self._actions:
            if not action.option_strings:
                metavar = formatter._get_default_metavar_for_positional(action)
                parts.append(formatter._format_args(action, metavar))
        return " ".join(parts) + f"   (`{self.prog} --help` for details)"

    def error(self, message: str):
        print(self.short_usage(), file=sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")

    # --- subcommands

    def add_commands(self, dest: str, metavar: str = "ACTION") -> argparse._SubParsersAction:
        """Subcommands; the parent alone prints its help and exits 2 (a usage error)."""
        self.set_defaults(func=lambda args: self.print_help(sys.stderr) or 2)
        return self.add_subparsers(dest=dest, metavar=metavar)


class _SubcommandsAction(argparse._SubParsersAction):
    """Subcommands that reject unknown options themselves, with their own usage and a suggestion."""

    def __call__(self, parser, namespace, values, option_string=None):
        name, rest = values[0], values[1:]
        chosen = self._name_parser_map.get(name)
        if chosen is None:
            return super().__call__(parser, namespace, values, option_string)
        if self.dest is not argparse.SUPPRESS:
            setattr(namespace, self.dest, name)
        subnamespace, extras = chosen.parse_known_args(rest, None)
        for key, value in vars(subnamespace).items():
            setattr(namespace, key, value)
        if extras:
            if isinstance(chosen, CommandParser):
                chosen.reject(extras)
            chosen.error(f"unrecognized arguments: {' '.join(extras)}")


def log_level(args: argparse.Namespace) -> int:
    """``-v``/``-q`` if given, else the command's ``default_log_level``, else WARNING."""
    return getattr(args, "log_level", getattr(args, "default_log_level", logging.WARNING))


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Yield ``(command words, parser)`` for a parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))
