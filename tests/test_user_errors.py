"""Every user error is one line on stderr and exit code 2, never a traceback; nothing runs first.

Dataset CSVs, feature tables, prompts files and templates are made broken on purpose here; the
commands run in-process (``cer.cli.main``) and stop before any model or extractor starts.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from cer.cli import main
from textualize.prompts import ModalityText, PromptRenderer, TemplateError

MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
               "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]  # fmt: skip
MELD_ROWS = [
    [1, "Oh my God, he\u2019s lost it.", "Phoebe", "sadness", "negative", 0, 0, 4, 7,
     "00:00:01,000", "00:00:02,500"],
    [2, "What?", "Monica", "surprise", "negative", 0, 1, 4, 7, "00:00:03,000", "00:00:03,600"],
]  # fmt: skip


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err, "nothing was said on stderr"
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def meld_csv_text(rows=MELD_ROWS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MELD_HEADER)
    writer.writerows(rows)
    return buffer.getvalue()


def meld_release(tmp_path, data: bytes):
    """A train-only MELD release with no clip folder (a text-only study)."""
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    (root / "train_sent_emo.csv").write_bytes(data)
    return root


def prepare_meld(tmp_path, release) -> int:
    out = tmp_path / "prepared"
    return main(["data", "prepare", "meld", str(release), str(out), "--splits", "train"])


# --- cer data prepare


def test_meld_csv_in_utf16_with_a_bom_is_read(tmp_path, capsys):
    release = meld_release(tmp_path, meld_csv_text().encode("utf-16"))
    assert prepare_meld(tmp_path, release) == 0
    manifest = pd.read_parquet(tmp_path / "prepared" / "manifest.parquet")
    assert manifest["gold_text"].tolist() == ["Oh my God, he's lost it.", "What?"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        # 0x81 and 0x9d are bytes that neither UTF-8 nor cp1252 can decode
        (meld_csv_text().encode("utf-8").replace(b"What?", b"Wh\x81t\x9d"), "not UTF-8"),
        (b"", "is empty"),
        (meld_csv_text([]).encode(), "no rows"),
        (meld_csv_text([[*MELD_ROWS[0][:5], "zero", *MELD_ROWS[0][6:]]]).encode(), "Dialogue_ID"),
        (meld_csv_text([[*MELD_ROWS[0][:9], "1 pm", "00:00:02,500"]]).encode(), "StartTime"),
    ],
    ids=["undecodable", "empty", "header-only", "bad-dialogue-id", "bad-time"],
)
def test_a_broken_meld_csv_is_one_line_and_exit_2(tmp_path, capsys, data, says):
    assert prepare_meld(tmp_path, meld_release(tmp_path, data)) == 2
    err = one_line_error(capsys)
    assert says in err and "train_sent_emo.csv" in err


def test_meld_with_no_usable_clip_fails_with_a_message(tmp_path, capsys):
    release = meld_release(tmp_path, meld_csv_text().encode())
    (release / "train_splits").mkdir()  # a clip folder, but empty: every clip is missing
    assert prepare_meld(tmp_path, release) != 0
    err = capsys.readouterr().err
    assert "no usable clip" in err and "2 missing" in err


def test_folder_with_no_usable_clip_fails_with_a_message(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\na.mp4,joy\n")
    code = main(["data", "prepare", "folder", str(tmp_path / "out"), "--clips",
                 str(tmp_path / "clips"), "--labels", str(labels)])  # fmt: skip
    assert code != 0
    assert "no usable clip" in capsys.readouterr().err


def test_folder_labels_with_a_bad_start_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"x")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label,start,end\na.mp4,joy,abc,1\n")
    code = main(["data", "prepare", "folder", str(tmp_path / "out"), "--clips",
                 str(tmp_path / "clips"), "--labels", str(labels)])  # fmt: skip
    assert code == 2
    assert "line 2" in one_line_error(capsys)


# --- cer baseline train / cer finetune train


def functionals_table(path):
    rng = np.random.default_rng(0)
    rows = [
        {"clip_id": f"{split}{i}", "label": ("calm", "tense")[i % 2], "split": split}
        | {f"egemaps_f{j}": float(v) for j, v in enumerate(rng.normal(size=3) + i % 2)}
        for split, n in (("train", 16), ("val", 6), ("test", 6))
        for i in range(n)
    ]
    pd.DataFrame(rows).to_parquet(path)
    return path


def baseline(tmp_path, *flags) -> int:
    common = ["--output-dir", str(tmp_path / "run"), "--epochs", "2", "--hidden", "8"]
    return main(["baseline", "train", *common, *flags])


def textualize_folder(tmp_path, prompts: bytes | None, run_json: str):
    folder = tmp_path / "textualized"
    folder.mkdir()
    if prompts is None:
        functionals_table(folder / "prompts.parquet")
    else:
        (folder / "prompts.parquet").write_bytes(prompts)
    (folder / "run.json").write_text(run_json)
    return folder


@pytest.mark.parametrize(
    "case", ["missing-source", "unknown-key", "bad-modality", "corrupt-table", "corrupt-csv",
             "corrupt-prompts", "truncated-run-json"],
)  # fmt: skip
def test_baseline_train_user_errors_are_one_line_and_exit_2(tmp_path, capsys, case):
    table = functionals_table(tmp_path / "table.parquet")
    if case == "missing-source":
        flags = ["--source", str(tmp_path / "nope.parquet")]
    elif case == "unknown-key":
        (tmp_path / "c.yaml").write_text(f"source: {table}\nlearning_rat: 0.1\n")
        flags = ["--config", str(tmp_path / "c.yaml")]
    elif case == "bad-modality":
        flags = ["--source", str(table), "--modalities", "AX"]
    elif case == "corrupt-table":
        (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
        flags = ["--source", str(tmp_path / "bad.parquet")]
    elif case == "corrupt-csv":
        (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x81")
        flags = ["--source", str(tmp_path / "bad.csv")]
    elif case == "corrupt-prompts":
        folder = textualize_folder(tmp_path, b"not parquet", '{"config": {"cache_dir": "c"}}')
        flags = ["--source", str(folder)]
    else:
        folder = textualize_folder(tmp_path, None, '{"config": {"cache_d')
        flags = ["--source", str(folder)]
    assert baseline(tmp_path, "--modalities", "A", *flags) == 2
    one_line_error(capsys)


def test_finetune_train_on_a_corrupt_parquet_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "p.parquet").write_bytes(b"PAR1 not really")
    code = main(["finetune", "train", "--prompts", str(tmp_path / "p.parquet"),
                 "--output-dir", str(tmp_path / "run")])  # fmt: skip
    assert code == 2
    assert "p.parquet" in one_line_error(capsys)


def test_baseline_checkpoints_hold_tensors_only_and_still_resume(tmp_path, monkeypatch):
    import torch

    from featurebaseline.config import BaselineConfig
    from featurebaseline.runner import predict_source, run_baseline

    table = functionals_table(tmp_path / "table.parquet")
    config = BaselineConfig(source=str(table), output_dir=str(tmp_path / "run"), modalities="A",
                            epochs=3, patience=0, batch_size=8, hidden=8, seeds=(0,))  # fmt: skip
    save, saved = torch.save, []

    def killed_in_epoch_two(obj, path, *args, **kwargs):
        save(obj, path, *args, **kwargs)
        saved.append(path)
        if len(saved) == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", killed_in_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            run_baseline(config)
    run_dir = tmp_path / "run"
    torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)  # no pickled objects
    resumed = run_baseline(config).runs[0]
    assert resumed.summary["resumed_from_epoch"] == 1 and resumed.summary["epochs_run"] == 3
    torch.load(resumed.run_dir / "model" / "model.pt", weights_only=True)
    outcome = predict_source(resumed.run_dir, str(table), tmp_path / "predicted.parquet")
    assert len(outcome.predictions) == 28


def test_a_checkpoint_holding_pickled_objects_is_refused(tmp_path, capsys):
    import torch

    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    torch.save({"spec": Payload()}, run_dir / "model" / "model.pt")
    (run_dir / "config.yaml").write_text("modalities: A\n")
    table = functionals_table(tmp_path / "table.parquet")
    assert main(["baseline", "predict", str(run_dir), str(table)]) == 2
    captured = capsys.readouterr()
    assert "pickled code ran" not in captured.out
    assert "model.pt" in captured.err and len(captured.err.strip().splitlines()) == 1


# --- templates


def template_file(tmp_path, text: str | bytes):
    path = tmp_path / "mine.j2"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{% include "paper.j2" %}', "include"),
        ('{% import "macros.j2" as m %}{{ m.x() }}', "import"),
        ('{% from "macros.j2" import x %}', "import"),
        ('{% extends "paper.j2" %}', "extends"),
        ("{% for i in range(10**9) %}x{% endfor %}", "range"),
        ("{{ 10 ** (10 ** 10) }}", "too large"),
        ('{{ "x" * 10**8 }}', "too large"),
        ("{% for i in range(5000) %}{{ transcript.text }}{% endfor %}", "64 KiB"),
        ('{{ "%099999999d" % 1 }}', "too large"),
        ('{{ "{:>99999999}".format(1) }}', "too large"),
        ('{{ "x" | center(10**9) }}', "too large"),
        ("{{ transcript.text.ljust(10**9) }}", "too large"),
        ("{% for i in range(90000) %}{% for j in range(90000) %}{% endfor %}{% endfor %}", "range"),
        (b"Transcription: \xff\xfe{{ transcript.text }}", "UTF-8"),
        ("{{ clip.start + 'x' }}", "failed"),
        ("{{ nothing_like_this }}", "nothing_like_this"),
    ],
    ids=["include", "import", "from-import", "extends", "huge-range", "huge-power", "huge-repeat",
         "huge-output", "huge-percent-width", "huge-format-width", "huge-center", "huge-ljust",
         "nested-ranges", "not-utf8", "type-error", "undefined"],
)  # fmt: skip
def test_a_bad_template_is_refused_when_the_renderer_is_built(tmp_path, text, says):
    with pytest.raises(TemplateError, match=says) as caught:
        PromptRenderer(str(template_file(tmp_path, text)), "TVA")
    assert "\n" not in str(caught.value)


def test_cli_bad_template_is_exit_2_one_line_before_extraction(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.wav").write_bytes(b"not audio")
    template = template_file(tmp_path, "{{ 10 ** (10 ** 10) }}")
    code = main(["textualize", str(tmp_path / "clips"), str(tmp_path / "out"), "--template",
                 str(template), "--cache-dir", str(tmp_path / "cache"), "--face", "off",
                 "--transcript", "false"])  # fmt: skip
    assert code == 2
    assert "too large" in one_line_error(capsys)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.json"))


def test_ordinary_user_templates_still_render(tmp_path):
    text = (
        "{% for turn in context[-2:] %}{{ turn.line }}\n{% endfor %}"
        "{{ clip.speaker or 'Someone' }} says {{ transcript.text | sentence }} "
        "{% for i in range(3) %}{{ i }}{% endfor %} {{ 2 ** 10 }} {{ '-' * 3 }} "
        "{{ '%5.1f' % clip.end }} {{ '{:>4}'.format('a') }} {{ 10**10**10 > 0 }}"
    )
    renderer = PromptRenderer(str(template_file(tmp_path, text)), "TVA")
    said = renderer.render(
        transcript=ModalityText(True, text="hi"),
        visual=ModalityText(False, missing="no face visible"),
        audio=ModalityText(False, missing="no audio"),
        clip={"clip_id": "c", "speaker": "Ann", "context": "A: one\nB: two\nA: three",
              "start": 0.0, "end": 2.0},
    )  # fmt: skip
    # Jinja's ** groups to the left: 10**10**10 is (10**10)**10, a 101-digit number
    assert said == "B: two\nA: three\nAnn says hi. 012 1024 ---   2.0    a True"


def test_render_output_is_bounded_per_prompt(tmp_path):
    renderer = PromptRenderer(str(template_file(tmp_path, "{{ transcript.text }}")), "T")
    with pytest.raises(TemplateError, match="64 KiB"):
        renderer.render(
            transcript=ModalityText(True, text="word " * 20000),
            visual=ModalityText(False),
            audio=ModalityText(False),
            clip={"clip_id": "c"},
        )
