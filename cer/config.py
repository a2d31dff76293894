"""Dataclasses as configuration schema: YAML file + command-line overrides, unknown keys are errors.

A config class is a frozen stdlib dataclass whose fields carry ``metadata={"help": ...}``.
``add_options`` turns it into argparse flags, ``resolve`` merges ``--config FILE`` with the flags
that were actually given on the command line (flags win), and ``save_config`` writes the resolved
values beside an output so a run can always be reproduced.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from cer.command_line import closest

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or option is invalid; the message says how to fix it."""


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Return (inner type, is_optional) for ``X | None`` annotations."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) in (tuple, list)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per dataclass field; defaults are shown but not applied (see ``resolve``).

    Booleans are ``--flag`` / ``--no-flag``, lists take space-separated values, choices are listed
    in the help. ``metadata={"aliases": ("other_name",)}`` adds ``--other-name`` and accepts
    ``other_name:`` in YAML (the first alias is the flag shown first).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, _ = _base_type(hints[f.name])
        names = (*f.metadata.get("aliases", ()), f.name)
        flags = ["--" + name.replace("_", "-") for name in names]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        notes = []
        if "choices" in f.metadata:
            notes.append("one of: " + ", ".join(map(str, f.metadata["choices"])))
        if isinstance(default, tuple) and default:
            notes.append(f"default: {' '.join(map(str, default))}")
        elif default not in (None, (), ""):
            notes.append(f"default: {default!r}")
        help_text = f.metadata.get("help", "") + (f" ({'; '.join(notes)})" if notes else "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif _is_tuple(tp):
            inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
            kwargs.update(type=inner, nargs="+", metavar=names[0].upper())
        else:
            kwargs.update(type=tp if tp in (int, float, str) else str, metavar=names[0].upper())
        parser.add_argument(*flags, **kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"config file not found: {path}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return data


def unknown_keys_message(unknown: list[str], valid: set[str], source: str) -> str:
    """``unknown option(s) in SOURCE: templat (did you mean template?); valid options are: ...``"""
    named = []
    for key in unknown:
        guess = closest(key, valid)
        named.append(f"{key} (did you mean {guess}?)" if guess else key)
    return f"unknown option(s) in {source}: {', '.join(named)}; valid options are: " + ", ".join(
        sorted(valid)
    )


def from_mapping(cls: type[T], values: dict[str, Any], *, source: str = "config") -> T:
    """Build ``cls`` from a flat mapping; unknown keys and bad types are errors naming the key."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    aliases = {
        alias: f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        for alias in f.metadata.get("aliases", ())
    }
    normalised = {
        aliases.get(k, k): v for k, v in ((str(k).replace("-", "_"), v) for k, v in values.items())
    }
    unknown = sorted(set(normalised) - names)
    if unknown:
        raise ConfigError(unknown_keys_message(unknown, names | set(aliases), source))
    hints = typing.get_type_hints(cls)
    fields_by_name = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    coerced = {}
    for key, value in normalised.items():
        tp, optional = _base_type(hints[key])
        if value is None and optional:
            coerced[key] = None
        elif _is_tuple(tp):
            coerced[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif tp is bool and isinstance(value, str):
            coerced[key] = _parse_bool(value)
        elif tp in (int, float) and not isinstance(value, bool):
            try:
                coerced[key] = tp(value)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"option {key} in {source} must be {tp.__name__}, got {value!r}"
                ) from err
        elif tp is str and isinstance(value, bool):
            # YAML 1.1 reads on/off/yes/no as booleans; map them back for on/off choices.
            coerced[key] = "on" if value else "off"
        else:
            coerced[key] = value
        choices = fields_by_name[key].metadata.get("choices")
        if choices and coerced[key] is not None and coerced[key] not in choices:
            raise ConfigError(
                f"option {key} in {source} must be one of {', '.join(map(str, choices))}, "
                f"got {coerced[key]!r}"
            )
    try:
        return cls(**coerced)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid {source}: {err}") from err


def resolve(cls: type[T], args: argparse.Namespace, *, config_file: str | None = None) -> T:
    """Merge a YAML config file (if any) with the flags given on the command line."""
    values: dict[str, Any] = load_yaml(config_file) if config_file else {}
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    values.update({k: v for k, v in vars(args).items() if k in names})
    return from_mapping(cls, values, source=config_file or "command line")


def to_mapping(config: Any) -> dict[str, Any]:
    """JSON-friendly dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved configuration as YAML, to sit beside the outputs it produced."""
    import yaml

    Path(path).write_text(yaml.safe_dump(to_mapping(config), sort_keys=False), encoding="utf-8")
