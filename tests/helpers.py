"""Test helpers that build real artefacts (adapters, registries) on the embedded default model."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock


def make_random_adapter(path: Path, seed: int, model: str = "default") -> Path:
    """Save a LoRA adapter (r=8, q/v projections) whose B matrices are random, not zero."""
    import torch
    from peft import LoraConfig, get_peft_model

    from modplural.models import load_model

    torch.manual_seed(seed)
    base = load_model(model, device="cpu", dtype="float32").model
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(str(path), save_embedding_layers=False)
    return path


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command line's ``main(ARGS)`` in this process, as ``python -m modplural ARGS`` would run, with ``env``
    added to the environment for the call: its exit status and what it printed. An exception that escapes ``main`` is
    printed as the interpreter would print it (a traceback, status 1), so a crash reads as one."""
    from modplural.cli import main

    if any(name.startswith("PYTHON") for name in env or {}):
        raise ValueError(f"{sorted(env)}: an interpreter reads these when it starts; use run_cli_process")
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(list(args)) or 0
        except SystemExit as exc:  # argparse's --help (0) and usage errors (2)
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            traceback.print_exc()
            status = 1
    return subprocess.CompletedProcess(["modplural", *args], status, out.getvalue(), err.getvalue())


def run_cli_process(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m modplural ARGS`` in a subprocess (the real entry point, a fresh interpreter, a time limit: for
    servers that may hang and for what is once per process) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "modplural", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: non-zero exit, no traceback, one error line naming what is wrong."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("modplural: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def slice_raw_corpora(dest: Path, rows: int = 300, debater_rows: int = 3000) -> Path:
    """Copy the first rows of every real raw corpus file into ``dest`` (never committed; built per test run)."""
    import csv

    src = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA)) / "corpora_raw"
    csv.field_size_limit(1 << 30)
    for path in sorted(src.rglob("*")):
        if path.suffix not in (".jsonl", ".csv"):
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        limit = debater_rows if "ibm_debater" in str(path) else rows
        if path.suffix == ".jsonl":
            with path.open() as f:
                target.write_text("".join(line for _, line in zip(range(limit), f)))
        else:
            with path.open(newline="") as f, target.open("w", newline="") as out:
                reader = csv.reader(f)
                writer = csv.writer(out)
                for _, row in zip(range(limit + 1), reader):
                    writer.writerow(row)
    return dest


def write_registry(path: Path, adapters: dict[str, Path]) -> Path:
    """A registry YAML listing one community per adapter directory."""
    import yaml

    entries = [
        {"name": name, "description": f"people who speak like {name}", "axis": "test", "base_model": "default",
         "adapter": str(adapter), "corpus": {"source": "random LoRA weights made by the tests", "licence": "CC0"}, "weight": float(i + 1)}
        for i, (name, adapter) in enumerate(adapters.items())
    ]
    path.write_text(yaml.safe_dump({"version": 1, "communities": entries}))
    return path
