"""Local engines by name: ``batched`` (ours, the default) and ``sequential`` (the original's pattern, for measurement)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from modplural.errors import ModPluralError

ENGINES = ("batched", "sequential")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ModPluralError(f"unknown engine {engine!r}: choose {' or '.join(ENGINES)}")
    return engine


def local_backend(
    model: str,
    adapters: Mapping[str, str | Path] | None = None,
    engine: str = "batched",
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int | str = "auto",
):
    """A local backend of the named engine with ``adapters`` loaded."""
    from modplural.backends.local import LocalBackend
    from modplural.backends.sequential import SequentialBackend

    engine_class = LocalBackend if check_engine(engine) == "batched" else SequentialBackend
    return engine_class(model, adapters=adapters, device=device, dtype=dtype, batch_size=batch_size)
