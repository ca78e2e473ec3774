"""Test helpers that build real artefacts (adapters, registries) on the embedded default model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m modplural ARGS`` in a subprocess and capture its output."""
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
