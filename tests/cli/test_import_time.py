"""What an entry point imports, read with `python -X importtime` in a fresh interpreter: reading, scoring, viewing and comparing a finished_run
run import nothing that generates; the method layer imports no torch; the engine modules import in either order."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PACKAGE = Path(__file__).resolve().parents[2] / "modplural"


GENERATION = ("torch", "transformers", "peft", "accelerate", "modplural.assembly", "modplural.methods", "modplural.pool", "modplural.backends",
              "modplural.runs.generation", "modplural.models", "modplural.message_cache")


def imported_by(tmp_path: Path, *command: str) -> set[str]:
    """Every module ``python -m modplural COMMAND`` imports on a committed run (python -X importtime lists them)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "modplural", *command], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:") and "|" in line}


def generating(imported: set[str]) -> list[str]:
    return sorted(name for name in imported if name in GENERATION or name.split(".")[0] in GENERATION or name.startswith(tuple(g + "." for g in GENERATION)))


@pytest.fixture
def committed_run(tmp_path: Path) -> Path:
    return shutil.copytree(PACKAGE.parent / "experiments" / "results" / "vital_protocols" / "runs" / "original", tmp_path / "run")


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


ORIGINAL_RUN = REPO / "experiments" / "results" / "vital_protocols" / "runs" / "original"  # committed run directory with scores.json


@pytest.mark.parametrize("module", ["modplural.methods", "modplural.assembly", "modplural.cli"])
def test_the_method_layer_imports_no_torch(module):
    """A user who drives only HTTP servers does not pay for torch or transformers (python -X importtime)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, cwd=REPO, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert module in imported
    assert not {m for m in imported if m.split(".")[0] in ("torch", "transformers", "peft")}


def test_report_of_a_finished_run_imports_nothing_that_generates(committed_run, tmp_path):
    imported = imported_by(tmp_path, "report", str(committed_run))
    assert "modplural.runs.report" in imported and generating(imported) == []


def test_score_and_view_of_a_finished_run_import_nothing_that_generates(run, tmp_path):
    """Scoring from stored predictions needs the tasks and metrics, viewing needs the scores: neither imports the
    generation stack nor torch (an Overton scorer would load only where a task needs it; this run has none)."""

    scored = imported_by(tmp_path, "score", str(run))
    assert "modplural.runs.scoring" in scored and generating(scored) == []
    viewed = imported_by(tmp_path, "view", str(run))
    assert "modplural.runs.view" in viewed and generating(viewed) == [] and (run / "view.html").is_file()


def test_compare_reads_no_model_library():
    """Reading a finished_run run imports no torch, transformers or peft (python -X importtime lists every import)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "modplural", "compare", str(ORIGINAL_RUN), "--with", "vital"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines() if line.startswith("import time:") and "|" in line}
    assert "modplural" in imported and not imported & {"torch", "transformers", "peft"}


def test_engine_modules_import_on_their_own_in_either_order():
    import subprocess
    import sys

    for first, second in (("sequential", "local"), ("local", "sequential")):
        code = (f"import modplural.backends.{first}, modplural.backends.{second}\n"
                "from modplural.backends.sequential import SequentialBackend\n"
                "from modplural.backends.local import LocalBackend\n"
                "from modplural.assembly import local_backend\n"
                "print(SequentialBackend.engine, LocalBackend.engine)")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["sequential", "batched"]

