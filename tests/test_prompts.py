"""Rendering: built-in templates, modality subsets, user templates, sandboxing."""

from __future__ import annotations

import pytest

from textualize.prompts import ModalityText, PromptRenderer, TemplateError

SAYS = ModalityText(True, text="we won the game")
SMILES = ModalityText(
    True, action_units="strong lip corner puller (AU12) throughout", emotions="happiness (strong)"
)
LOUD = ModalityText(True, prosody="high pitch; loud; fast speech", emotion="joy (0.80)")
CLIP = {"clip_id": "c1", "speaker": None, "context": None, "start": 0.0, "end": 2.0}


def render(
    template="paper", modalities="TVA", labels=(), transcript=SAYS, visual=SMILES, audio=LOUD
):
    return PromptRenderer(template, modalities, labels).render(
        transcript=transcript, visual=visual, audio=audio, clip=CLIP
    )


def test_paper_template_has_the_four_parts_of_the_reference_format():
    assert render() == (
        "Transcription: we won the game.\n"
        "Activated action units: strong lip corner puller (AU12) throughout.\n"
        "Predicted visual emotions: happiness (strong).\n"
        "Prosody characteristics: high pitch; loud; fast speech.\n"
        "Audio emotional state: joy (0.80)."
    )


def test_modality_subset_leaves_out_the_others():
    text = render(modalities="T+A")
    assert "Transcription" in text and "Prosody" in text and "action units" not in text


def test_missing_modalities_are_said_distinctly():
    text = render(
        visual=ModalityText(False, missing="no face visible"),
        transcript=ModalityText(False, missing="no speech"),
    )
    assert "Visual: no face visible." in text and "Transcription: no speech." in text


def test_instruction_template_lists_the_labels():
    text = render("instruction", labels=("anger", "joy"))
    assert 'What they say: "we won the game"' in text
    assert text.endswith("Answer with exactly one of: anger, joy.")


def test_user_template_file(tmp_path):
    path = tmp_path / "mine.j2"
    path.write_text("{{ clip.clip_id }}: {{ transcript.text }} | {{ audio.prosody }}")
    assert render(str(path)) == "c1: we won the game | high pitch; loud; fast speech"


def test_templates_are_sandboxed(tmp_path):
    path = tmp_path / "evil.j2"
    path.write_text("{{ clip.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError):
        render(str(path))


def test_bad_modalities_and_unknown_templates_are_clear_errors():
    with pytest.raises(TemplateError, match="T, V, A"):
        PromptRenderer("paper", "TX")
    with pytest.raises(TemplateError, match="neither a built-in"):
        PromptRenderer("nonexistent")
