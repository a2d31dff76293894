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
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

BUILTIN_TEMPLATES = ("paper", "instruction", "dialogue", "instruction_dialogue")
VALID_MODALITIES = frozenset("TVA")


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
    return f"file:{path.name}", path.read_text("utf-8")


class PromptRenderer:
    """Compiles one template once, renders many units."""

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
        from jinja2 import StrictUndefined, TemplateSyntaxError
        from jinja2.sandbox import SandboxedEnvironment

        if source is None:
            self.template_id, source = template_source(template)
        else:
            self.template_id = template
        self.modalities = parse_modalities(modalities)
        self.labels = tuple(labels)
        env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
        )
        env.filters["sentence"] = end_sentence
        try:
            self._template = env.from_string(source)
        except TemplateSyntaxError as err:
            raise TemplateError(
                f"template {self.template_id} line {err.lineno}: {err.message}"
            ) from err

    def render(
        self,
        *,
        transcript: ModalityText,
        visual: ModalityText,
        audio: ModalityText,
        clip: dict[str, Any],
    ) -> str:
        from jinja2 import TemplateError as JinjaError

        try:
            text = self._template.render(
                modalities=self.modalities,
                labels=self.labels,
                clip=clip,
                context=dialogue_turns(clip.get("context")),
                transcript=transcript,
                visual=visual,
                audio=audio,
            )
        except JinjaError as err:
            raise TemplateError(f"template {self.template_id} failed to render: {err}") from err
        return text.strip()
