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
