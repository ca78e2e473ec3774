"""A peft LoRA adapter directory, read and checked once before any engine serves it.

Every problem (missing files, a config that is not a JSON object, weights that are not a readable
safetensors file, a tensor holding NaN or infinite values) is a ``ModPluralError`` naming the adapter,
the file and, for weights, the tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modplural.errors import ModPluralError
from modplural.json_files import read_json

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class AdapterFiles:
    """An adapter's name, directory, parsed config and weights (CPU tensors, every value finite)."""

    name: str
    path: Path
    config: dict
    weights: dict  # tensor name -> torch.Tensor


def read_adapter(name: str, path: Path) -> AdapterFiles:
    """Read the adapter at ``path`` (to be served as ``name``) and check its files."""
    if not path.is_dir():
        raise ModPluralError(f"adapter directory for {name!r} not found: {path}")
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (path / required).is_file():
            raise ModPluralError(f"adapter {name!r} at {path} has no {required}")
    return AdapterFiles(name, path, _read_config(name, path / ADAPTER_CONFIG), _read_weights(name, path / ADAPTER_WEIGHTS))


def _read_config(name: str, file: Path) -> dict:
    try:
        return read_json(file, dict)
    except ModPluralError as exc:
        raise ModPluralError(f"adapter {name!r}: {exc}") from exc


def _read_weights(name: str, file: Path) -> dict:
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(file), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModPluralError(f"adapter {name!r}: {file} is not a readable safetensors file ({exc})") from exc
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModPluralError(f"adapter {name!r}: tensor {key} in {file} holds NaN or infinite values; the adapter is broken (retrain or replace it)")
    return weights
