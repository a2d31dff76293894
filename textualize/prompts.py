"""Render unit descriptions into prompts with sandboxed Jinja2 templates.

Built-in templates: ``paper`` (the format of Richet et al. 2024) and ``instruction`` (for chat /
instruct models), and their dialogue variants ``dialogue`` and ``instruction_dialogue``, which
put the previous turns of the conversation before the same lines (and nothing more when a clip
has no context). A path to a ``.j2`` file works too. The modality subset is a render-time
choice: any of T (transcript), V (visual) and A (audio); nothing is re-extracted to change it.

Template variables: ``modalities`` (set of letters), ``labels`` (label names, may be empty; they
come from the fitted textualizer, textualize/textualizer.py, not from the clips being rendered),
``clip`` (clip_id, speaker, context, start, end), ``context`` (the previous turns of the dialogue,
oldest first, each with ``speaker``, ``text`` and ``line`` = "Speaker: text"; empty for a
dialogue's first turn or data without dialogues; how many is set when the data is prepared, e.g.
``cer data prepare meld --context-turns 5``, and ``context[-2:]`` keeps fewer), and
``transcript``, ``visual``, ``audio``, each with ``present`` (bool), ``missing`` (why it is
absent, e.g. "no face visible") and text fields: ``transcript.text``; ``visual.action_units``,
``visual.emotions``; ``audio.prosody``, ``audio.emotion``.

A template is checked when the renderer is built, before any clip is read: it is one file (no
include, import or extends), renders in a sandbox whose ranges, numbers and strings are bounded
(``range`` gives at most ``MAX_RANGE_ITEMS`` items per prompt, a number at most
``MAX_INT_BITS`` bits, a string or an argument at most ``MAX_PROMPT_CHARS``), and renders a
synthetic clip without error. A prompt longer than ``MAX_PROMPT_CHARS`` is an error, never cut.
(Loops over long strings nested several deep are not bounded; templates are the user's own.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

BUILTIN_TEMPLATES = ("paper", "instruction", "dialogue", "instruction_dialogue")
VALID_MODALITIES = frozenset("TVA")
MAX_PROMPT_CHARS = 64 * 1024  # a prompt, a string made while rendering, or a size argument
MAX_RANGE_ITEMS = 10_000  # all range() items of one prompt together
MAX_INT_BITS = 4096  # an integer made by ** or * (10**1233 is about this size)
_PERCENT_SIZES = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def end_sentence(text: str) -> str:
    """Close a phrase with a full stop unless it already ends a sentence (template filter)."""
    text = str(text).rstrip()
    return text if text.endswith((".", "!", "?", "…")) else text + "."


class TemplateError(ValueError):
    """A template cannot be found, parsed or rendered; the message names the template."""


@dataclass(frozen=True)
class ModalityText:
    present: bool
    missing: str = ""  # why it is not present, said in words
    text: str = ""
    action_units: str = ""
    emotions: str = ""
    prosody: str = ""
    emotion: str = ""


@dataclass(frozen=True)
class Turn:
    """One earlier utterance of the dialogue."""

    speaker: str
    text: str

    @property
    def line(self) -> str:
        return f"{self.speaker}: {self.text}" if self.speaker else self.text


def dialogue_turns(context: str | None) -> tuple[Turn, ...]:
    """The previous turns from a clip's ``context`` ("Speaker: text" lines, oldest first)."""
    turns = []
    for line in (context or "").splitlines():
        if line.strip():
            speaker, sep, text = line.partition(": ")
            turns.append(Turn(speaker.strip(), text.strip()) if sep else Turn("", line.strip()))
    return tuple(turns)


def parse_modalities(spec: str) -> frozenset[str]:
    letters = frozenset(spec.upper().replace("+", "").replace(",", ""))
    if not letters or letters - VALID_MODALITIES:
        raise TemplateError(
            f"modalities must be letters from T, V, A (e.g. 'TVA', 'T+A'), got {spec!r}"
        )
    return letters


def template_source(name: str) -> tuple[str, str]:
    """(template id, source text) for a built-in name or a template file path."""
    if name in BUILTIN_TEMPLATES:
        text = resources.files("textualize").joinpath(f"templates/{name}.j2").read_text("utf-8")
        return name, text
    path = Path(name)
    if not path.is_file():
        raise TemplateError(
            f"template {name!r} is neither a built-in ({', '.join(BUILTIN_TEMPLATES)}) nor a file"
        )
    try:
        return f"file:{path.name}", path.read_text("utf-8")
    except UnicodeDecodeError as err:
        raise TemplateError(
            f"template {name} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from err
    except OSError as err:
        raise TemplateError(f"template {name} cannot be read: {err.strerror or err}") from err


class _TooLarge(Exception):
    """Raised inside the sandbox; the renderer turns it into a one-line TemplateError."""


def _check_size(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_PROMPT_CHARS:
        raise _TooLarge(f"{what} makes a value too large ({len(value)} > {MAX_PROMPT_CHARS})")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _TooLarge(f"{what} makes a number too large (over {MAX_INT_BITS} bits)")
    return value


def _check_arguments(args, kwargs, what: str) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_PROMPT_CHARS:
            raise _TooLarge(f"{what}: argument {value} is too large (at most {MAX_PROMPT_CHARS})")


def _check_growth(name: str, target: Any, args: tuple) -> None:
    """Refuse replace/join/indent calls whose result would be too large, before making it."""
    if not isinstance(target, str) and name != "join":
        return
    if name == "replace" and len(args) >= 2 and isinstance(args[1], str):
        old, new = str(args[0]), args[1]
        grows = target.count(old) * (len(new) - len(old)) if old else len(new) * len(target)
        size = len(target) + max(grows, 0)
    elif name == "join" and args:
        items, sep = (target, args[0]) if not isinstance(target, str) else (args[0], target)
        items = list(items) if isinstance(items, (list, tuple, range)) else []
        size = len(str(sep)) * len(items) + sum(len(str(i)) for i in items)
    elif name == "indent" and args and isinstance(args[0], str):
        size = len(target) + len(args[0]) * (target.count("\n") + 1)
    else:
        return
    if size > MAX_PROMPT_CHARS:
        raise _TooLarge(f"{name} makes a value too large ({size} > {MAX_PROMPT_CHARS})")


def _bounded_range(context, *args):
    """``range`` with at most MAX_RANGE_ITEMS items per prompt, all ranges together."""
    items = range(*args)
    used = getattr(context, "_cer_range_items", 0) + len(items)
    if used > MAX_RANGE_ITEMS:
        raise _TooLarge(
            f"range gives {used} items in one prompt, more than {MAX_RANGE_ITEMS}; loop over fewer"
        )
    context._cer_range_items = used
    return items


def _bounded_filter(name: str, func):
    """A filter that checks its size arguments and result, and is never folded at compile time
    (a context-passing filter is evaluated when rendering, not when parsing)."""
    from jinja2.utils import _PassArg, pass_context

    pass_arg = _PassArg.from_obj(func)

    @pass_context
    def bounded(context, value, *args, **kwargs):
        _check_arguments(args, kwargs, f"filter {name}")
        _check_growth(name, value, args)
        if pass_arg is _PassArg.context:
            result = func(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = func(context.environment, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        return _check_size(result, f"filter {name}")

    return bounded


def _bounded_environment():
    """A sandboxed Jinja environment whose operators, calls, filters and ranges are bounded."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment
    from jinja2.utils import pass_context

    class BoundedEnvironment(SandboxedEnvironment):
        intercepted_binops = frozenset({"**", "*", "+", "%"})

        def call_binop(self, context, operator, left, right):
            integers = isinstance(left, int) and isinstance(right, int)
            power = operator == "**" and integers and right > 0 and abs(left) > 1
            if power and abs(left).bit_length() * right > MAX_INT_BITS:
                raise _TooLarge(f"{left} ** {right} is too large a number")
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    sized = isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                    if sized and len(seq) * times > MAX_PROMPT_CHARS:
                        raise _TooLarge(f"repeating a value {times} times makes it too large")
                if integers and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise _TooLarge("a product is too large a number")
            if operator == "%" and isinstance(left, str):
                for width, precision in _PERCENT_SIZES.findall(left):
                    for size in (width, precision):
                        if size == "*" or (size and int(size) > MAX_PROMPT_CHARS):
                            raise _TooLarge(f"a %-format size {size} is too large")
            return _check_size(super().call_binop(context, operator, left, right), operator)

        def call(self, context, obj, /, *args, **kwargs):
            name = getattr(obj, "__name__", "a function")
            if obj is not self.globals["range"]:
                _check_arguments(args, kwargs, name)
                _check_growth(name, getattr(obj, "__self__", None), args)
            return _check_size(super().call(context, obj, *args, **kwargs), name)

        def wrap_str_format(self, value):
            wrapped = super().wrap_str_format(value)
            if wrapped is not None:
                from string import Formatter

                for _, _, spec, _ in Formatter().parse(value.__self__):
                    if spec and ("{" in spec or any(
                        int(n) > MAX_PROMPT_CHARS for n in re.findall(r"\d+", spec)
                    )):  # fmt: skip
                        raise _TooLarge(f"format size {spec!r} is too large or nested")
            return wrapped

    env = BoundedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    env.filters["sentence"] = end_sentence
    env.filters = {name: _bounded_filter(name, f) for name, f in env.filters.items()}
    env.globals["range"] = pass_context(_bounded_range)
    del env.globals["lipsum"]  # placeholder text: of no use in a prompt, and unbounded
    return env


#: What a template may not do: read other templates (there is no loader, and no other file).
_FORBIDDEN_NODES = {"Include": "include", "Import": "import", "FromImport": "import",
                    "Extends": "extends"}  # fmt: skip


class PromptRenderer:
    """Compiles one template once, checks it on a synthetic clip, renders many units."""

    def __init__(
        self,
        template: str = "paper",
        modalities: str = "TVA",
        labels: tuple[str, ...] = (),
        *,
        source: str | None = None,
    ):
        """``source``: the template text itself (e.g. as saved in a fitted textualizer); then
        ``template`` is only its id and nothing is read from disk."""
        from jinja2 import TemplateSyntaxError, nodes

        if source is None:
            self.template_id, source = template_source(template)
        else:
            self.template_id = template
        self.modalities = parse_modalities(modalities)
        self.labels = tuple(labels)
        env = _bounded_environment()
        try:
            tree = env.parse(source)
            self._template = env.from_string(tree)
        except TemplateSyntaxError as err:
            raise TemplateError(
                f"template {self.template_id} line {err.lineno}: {err.message}"
            ) from err
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            word = _FORBIDDEN_NODES[type(node).__name__]
            raise TemplateError(
                f"template {self.template_id} line {node.lineno}: {word} is not allowed; a "
                "template is one self-contained file (copy the parts it needs into it)"
            )
        self._trial_render()

    def _trial_render(self) -> None:
        """Render a synthetic clip with every modality present, then with none, so that a
        template that fails (unknown variable, type error, too large) fails before any work."""
        clip = {"clip_id": "trial", "speaker": "Speaker", "context": "A: Hello.\nB: Hi.",
                "start": 0.0, "end": 2.0}  # fmt: skip
        present = {
            "transcript": ModalityText(True, text="I can't believe it"),
            "visual": ModalityText(
                True, action_units="lip corner puller (AU12)", emotions="happiness (strong)"
            ),
            "audio": ModalityText(True, prosody="high pitch; loud", emotion="joy (0.80)"),
        }
        absent = {k: ModalityText(False, missing="not available") for k in present}
        for values in (present, absent):
            self.render(**values, clip=clip)

    def render(
        self,
        *,
        transcript: ModalityText,
        visual: ModalityText,
        audio: ModalityText,
        clip: dict[str, Any],
    ) -> str:
        from jinja2 import TemplateError as JinjaError

        where = f"template {self.template_id}"
        chunks, size = [], 0
        try:
            for chunk in self._template.generate(
                modalities=self.modalities,
                labels=self.labels,
                clip=clip,
                context=dialogue_turns(clip.get("context")),
                transcript=transcript,
                visual=visual,
                audio=audio,
            ):
                size += len(chunk)
                if size > MAX_PROMPT_CHARS:
                    raise _TooLarge(
                        f"the prompt of clip {clip.get('clip_id')!r} is longer than 64 KiB "
                        f"({MAX_PROMPT_CHARS} characters)"
                    )
                chunks.append(chunk)
        except _TooLarge as err:
            raise TemplateError(f"{where}: {err}") from err
        except JinjaError as err:
            raise TemplateError(f"{where} failed to render: {_one_line(err)}") from err
        except Exception as err:  # a template's own mistake, e.g. a number plus a string
            raise TemplateError(
                f"{where} failed to render: {type(err).__name__}: {_one_line(err)}"
            ) from err
        return "".join(chunks).strip()


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
