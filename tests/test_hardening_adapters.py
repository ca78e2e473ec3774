"""Broken adapters, caches, models and checkpoints: refused with one-line errors, never spread or stored.

Every broken artefact here is a real file: a shipped community adapter copied and corrupted, a real
SQLite path, a real checkpoint written by a short training run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modplural.backends.local import LocalBackend
from modplural.backends.sequential import SequentialBackend
from modplural.errors import ModPluralError
from tests.helpers import assert_one_line_error, run_cli, write_registry

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "community_models" / "SmolLM2-135M-Instruct"


# ----------------------------------------------------------------------------- broken adapter files
def _copy(name: str, dest: Path) -> Path:
    """A writable copy of a shipped community adapter."""
    return Path(shutil.copytree(SHIPPED / name, dest))


def _poison(adapter: Path, value: float = float("nan")) -> str:
    """Fill the adapter's first tensor with ``value``; returns that tensor's name."""
    file = adapter / "adapter_model.safetensors"
    weights = load_file(str(file))
    key = sorted(weights)[0]
    weights[key] = torch.full_like(weights[key], value)
    save_file(weights, str(file))
    return key


def _break(adapter: Path, how: str) -> str:
    """Corrupt the adapter in one of several ways; returns what the error must name."""
    weights, config = adapter / "adapter_model.safetensors", adapter / "adapter_config.json"
    if how == "nan":
        return _poison(adapter)
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return str(weights)
    if how == "garbage":
        weights.write_bytes(b"this is not a safetensors file " * 40)
        return str(weights)
    config.write_text("{'r': 8, lora_alpha: 16")
    return str(config)


@pytest.mark.parametrize("engine", [LocalBackend, SequentialBackend])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_adapter_weights_are_refused_at_load(loaded, tmp_path, engine, value):
    broken = _copy("public_health_agencies", tmp_path / "broken")
    tensor = _poison(broken, value)
    backend = engine(loaded=loaded, adapters={"patients": SHIPPED / "patients"})
    with pytest.raises(ModPluralError, match=rf"adapter 'broken': tensor {tensor} in .* holds NaN or infinite values"):
        backend.load_adapter("broken", broken)
    assert backend.adapters == ["patients"]


@pytest.mark.parametrize("how, command", [("nan", "check"), ("truncated", "ask"), ("garbage", "check"), ("config", "ask")])
def test_cli_broken_adapter_is_one_line(tmp_path, how, command):
    broken = _copy("public_health_agencies", tmp_path / "broken")
    named = _break(broken, how)
    registry = str(write_registry(tmp_path / "registry.yaml", {"patients": SHIPPED / "patients", "broken": broken}))
    if command == "check":
        result = run_cli("communities", "check", "--registry", registry, "--device", "cpu")
    else:
        result = run_cli("ask", "Is fluoride safe?", "--communities", "patients,broken", "--registry", registry, "--device", "cpu", "--no-cache")
    assert_one_line_error(result, "adapter 'broken'", named)
    assert result.returncode == 2
