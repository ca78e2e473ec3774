"""Model specs and the files a model directory must hold: every bad spec is one line, before any model loads."""

from __future__ import annotations

import json

import pytest
import torch

from modplural.errors import ModPluralError
from modplural.models import load_model, resolve_device, resolve_dtype
from tests.helpers import assert_one_line_error, run_cli


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

    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    with pytest.raises(ModPluralError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")
    with pytest.raises(ModPluralError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModPluralError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_cli_model_that_is_not_a_model_is_one_line(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("just some text\n")
    result = run_cli("ask", "Is fluoride safe?", "--method", "vanilla", "--model", str(fake), "--device", "cpu")
    assert_one_line_error(result, str(fake), "not a GGUF file")
    only_config = tmp_path / "only_config"
    only_config.mkdir()
    (only_config / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "vocab_size": 128}))
    result = run_cli("ask", "Is fluoride safe?", "--method", "vanilla", "--model", str(only_config), "--device", "cpu")
    assert_one_line_error(result, f"could not load model '{only_config}'")
    assert result.returncode == 2

