"""Finding clips loses nothing silently: unique ids, every skipped entry said, labels rows checked.

Only names and file types matter here (nothing is decoded), so the clips are placeholder files;
the command-line cases stop with exit code 2 before any extraction starts.
"""

from __future__ import annotations

import json
import logging
import os

import pytest

from cer.cli import main
from textualize.inputs import Discovery, InputError, SkippedInput, discover, discover_clips


def make_files(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# --- clip ids are unique by construction


def test_a_file_named_like_another_with_a_second_suffix_keeps_its_own_id(tmp_path):
    make_files(tmp_path, "a.mp4", "a.wav", "a.mp4.ogg")
    clips = discover_clips(tmp_path)
    assert {c.clip_id: os.path.basename(c.path) for c in clips} == {
        "a.mp4": "a.mp4",
        "a.wav": "a.wav",
        "a.mp4.ogg": "a.mp4.ogg",
    }


def test_ids_without_suffix_stay_when_nothing_clashes(tmp_path):
    make_files(tmp_path, "a.mp4", "a.mp4.ogg", "sub/b.wav", "sub.wav")
    ids = sorted(c.clip_id for c in discover_clips(tmp_path))
    # without its suffix a.mp4.ogg would be "a.mp4", the name of another file: it keeps it
    assert ids == ["a", "a.mp4.ogg", "sub", "sub/b"]
    assert len(ids) == len(set(ids))


def test_labels_match_by_stem_when_it_is_unambiguous(tmp_path):
    make_files(tmp_path / "clips", "a.mp4", "a.mp4.ogg", "b.wav")
    labels = tmp_path / "l.csv"
    labels.write_text("file,label\na.mp4,joy\na.mp4.ogg,sad\nb,anger\n")
    clips = discover_clips(tmp_path / "clips", labels)
    assert {c.clip_id: c.label for c in clips} == {"a": "joy", "a.mp4.ogg": "sad", "b": "anger"}


def test_manifest_ids_equal_as_text_are_a_clash_naming_the_rows(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"clip_id": 1, "path": "x.wav"})
        + "\n"
        + json.dumps({"clip_id": "1", "path": "y.wav"})
        + "\n"
    )
    with pytest.raises(InputError, match="repeats clip id.*'1'.*rows? 1.*2") as caught:
        discover_clips(manifest)
    assert "\n" not in str(caught.value)


def test_cli_manifest_id_clash_is_exit_2_one_line(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"clip_id": 1, "path": "x.wav"}\n{"clip_id": "1", "path": "y.wav"}\n')
    out = tmp_path / "out"
    code = main(["textualize", str(manifest), str(out), "--cache-dir", str(tmp_path / "c")])
    assert code == 2
    assert "repeats clip id" in one_line_error(capsys)


# --- nothing in a folder is dropped silently


def test_hidden_files_and_folders_are_skipped_with_a_reason(tmp_path, caplog):
    make_files(tmp_path, "a.mp4", ".DS_Store", "._a.mp4", ".git/config", "sub/.hidden.wav")
    with caplog.at_level(logging.WARNING, logger="textualize.inputs"):
        found = discover(tmp_path)
    assert isinstance(found, Discovery)
    assert [c.clip_id for c in found.clips] == ["a"]
    skipped = {s.path: s.reason for s in found.skipped}
    assert set(skipped) == {
        str(tmp_path / ".DS_Store"),
        str(tmp_path / "._a.mp4"),
        str(tmp_path / ".git"),
        str(tmp_path / "sub" / ".hidden.wav"),
    }
    assert all("hidden" in reason for reason in skipped.values())
    assert any("skipped 4" in r.getMessage() for r in caplog.records)


def test_dangling_links_loops_and_fifos_are_reported_and_never_opened(tmp_path):
    make_files(tmp_path, "a.wav", "real/b.wav")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (tmp_path / "self.mp4").symlink_to(tmp_path / "self.mp4")
    (tmp_path / "real" / "up").symlink_to(tmp_path / "real")  # a folder loop
    (tmp_path / "linked.wav").symlink_to(tmp_path / "a.wav")
    os.mkfifo(tmp_path / "pipe.wav")  # opening it would block forever
    found = discover(tmp_path)
    assert sorted(c.clip_id for c in found.clips) == ["a", "linked", "real/b"]
    reasons = {os.path.basename(s.path): s.reason for s in found.skipped}
    assert "dangling symlink" in reasons["gone.mp4"]
    assert "symlink loop" in reasons["self.mp4"]
    assert "symlink loop" in reasons["up"]
    assert "FIFO" in reasons["pipe.wav"]
    assert all(isinstance(s, SkippedInput) for s in found.skipped)


def test_a_folder_with_only_skipped_entries_says_so(tmp_path):
    make_files(tmp_path, ".DS_Store")
    with pytest.raises(InputError, match="no usable files.*1 skipped.*hidden"):
        discover(tmp_path)


def test_a_fifo_given_as_the_source_is_an_error_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(InputError, match="not a regular file"):
        discover(tmp_path / "pipe.wav")


# --- labels rows: unknown, repeated, bad times


def test_unknown_rows_are_counted_and_named_up_to_five(tmp_path, caplog):
    make_files(tmp_path / "clips", "a.wav")
    labels = tmp_path / "l.csv"
    labels.write_text("file,label\na,joy\n" + "".join(f"z{i},sad\n" for i in range(7)))
    with caplog.at_level(logging.WARNING, logger="textualize.inputs"):
        discover_clips(tmp_path / "clips", labels)
    (warning,) = [r.getMessage() for r in caplog.records if "match no clip" in r.getMessage()]
    assert "7 of 8 rows" in warning
    assert all(f"'z{i}'" in warning for i in range(5)) and "'z5'" not in warning


def test_identical_duplicate_rows_warn_and_conflicting_ones_are_an_error(tmp_path, caplog):
    make_files(tmp_path / "clips", "a.wav", "b.wav")
    same = tmp_path / "same.csv"
    same.write_text("file,label\na.wav,joy\na,joy\nb,sad\n")
    with caplog.at_level(logging.WARNING, logger="textualize.inputs"):
        clips = discover_clips(tmp_path / "clips", same)
    assert {c.clip_id: c.label for c in clips} == {"a": "joy", "b": "sad"}
    assert any(
        "1 clip(s) named by several identical rows" in r.getMessage() for r in caplog.records
    )
    conflicting = tmp_path / "conflict.csv"
    conflicting.write_text("file,label\na.wav,joy\na,sad\nb,sad\n")
    with pytest.raises(InputError, match="named by several rows"):
        discover_clips(tmp_path / "clips", conflicting)


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("abc", "2", "not a number"),
        ("nan", "2", "not a finite"),
        ("1", "inf", "not a finite"),
        ("-1", "2", "negative"),
        ("2", "2", "end 2.0 is not after start 2.0"),
        ("3", "1", "not after start"),
    ],
)
def test_bad_times_in_a_labels_file_name_the_row(tmp_path, start, end, says):
    make_files(tmp_path / "clips", "a.wav", "b.wav")
    labels = tmp_path / "l.csv"
    labels.write_text(f"file,label,start,end\na,joy,0,1\nb,sad,{start},{end}\n")
    with pytest.raises(InputError, match=says) as caught:
        discover_clips(tmp_path / "clips", labels)
    message = str(caught.value)
    assert "row 2" in message and "'b'" in message and "\n" not in message


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_bad_times_in_a_manifest_name_the_row(tmp_path, suffix):
    manifest = tmp_path / f"m{suffix}"
    if suffix == ".csv":
        manifest.write_text("clip_id,path,start,end\nc1,a.wav,0,1\nc2,b.wav,abc,2\n")
    else:
        manifest.write_text(
            '{"clip_id": "c1", "path": "a.wav", "start": 0, "end": 1}\n'
            '{"clip_id": "c2", "path": "b.wav", "start": "abc", "end": 2}\n'
        )
    with pytest.raises(InputError, match="row 2.*'c2'.*start 'abc' is not a number"):
        discover_clips(manifest)


def test_cli_bad_times_are_exit_2_one_line(tmp_path, capsys):
    make_files(tmp_path / "clips", "a.wav")
    labels = tmp_path / "l.csv"
    labels.write_text("file,label,start,end\na,joy,abc,1\n")
    out = tmp_path / "out"
    args = ["textualize", str(tmp_path / "clips"), str(out), "--labels", str(labels)]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 2
    assert "not a number" in one_line_error(capsys)


def test_textualize_lists_what_it_skipped_in_failures_jsonl(tmp_path, capsys):
    from media_factory import tone

    clips = tmp_path / "clips"
    clips.mkdir()
    tone(clips / "take.wav", seconds=2.0)
    make_files(clips, ".DS_Store")
    os.symlink(clips / "gone.wav", clips / "link.wav")
    out = tmp_path / "out"
    code = main(
        [
            "textualize",
            str(clips),
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--face",
            "off",
            "--transcript",
            "false",
            "--progress",
            "false",
        ]
    )
    assert code == 0
    assert "2 skipped: not clips" in capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    skipped = {os.path.basename(r["path"]): r["reason"] for r in rows if r["status"] == "skipped"}
    assert skipped.keys() == {".DS_Store", "link.wav"}
    assert "hidden" in skipped[".DS_Store"] and "dangling" in skipped["link.wav"]
