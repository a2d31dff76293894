"""Benchmarks are scripts beside the library: run from the project root, never installed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Scripts; modules named _*.py are helpers they share.
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def test_the_benchmarks_are_there():
    names = {p.stem for p in SCRIPTS}
    assert {"bench_textualize", "bench_finetune_meld", "fit_prosody_reference"} <= names
    assert not list((ROOT / "experiments").glob("bench_*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_help_runs_from_the_project_root(script):
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{script.stem}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_docstring_gives_the_command_and_paths_are_relative(script):
    text = script.read_text(encoding="utf-8")
    assert f"python -m benchmarks.{script.stem}" in ast.get_docstring(ast.parse(text))
    assert "/work" not in text, f"{script.name}: find data from Path(__file__), not /work"
    assert "experiments/results" not in text and "experiments.bench_" not in text


def test_results_are_json_beside_the_scripts():
    results = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert results
    for path in results:
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict), path


def test_benchmarks_and_configs_are_not_installed_but_the_study_library_is():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(fnmatch("experiments", pattern) for pattern in include)
    for name in ("benchmarks", "benchmarks.bench_textualize", "configs"):
        assert not any(fnmatch(name, pattern) for pattern in include), name


def test_benchmarks_import_only_from_the_project_root(tmp_path):
    probe = (
        "import importlib.util; spec = importlib.util.find_spec('benchmarks'); "
        "print(list(spec.submodule_search_locations) if spec else [])"
    )
    elsewhere = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert str(ROOT / "benchmarks") not in elsewhere.stdout


def test_shipped_configs_are_data_at_the_project_root():
    from experiments.cli import STUDIES_DIR

    assert STUDIES_DIR == ROOT / "configs" / "studies"
    for kind in ("studies", "textualize", "finetune", "baseline"):
        assert list((ROOT / "configs" / kind).glob("*.yaml")), kind
        assert not (ROOT / "experiments" / kind).exists(), kind
    assert not list((ROOT / "configs").rglob("*.py"))
