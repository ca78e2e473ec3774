"""Build the local backend that serves a set of communities (one base model, one adapter each)."""

from __future__ import annotations

from typing import Sequence

from modplural.backends.local import LocalBackend
from modplural.communities import Community
from modplural.errors import ModPluralError


def local_backend_for(
    communities: Sequence[Community], model: str | None = None, device: str = "auto", dtype: str = "auto", batch_size: int = 16
) -> LocalBackend:
    """Load the communities' common base model (or ``model``) with every community's adapter under its name."""
    bases = sorted({c.base_model for c in communities})
    if len(bases) > 1:
        raise ModPluralError(f"communities are trained on different base models ({', '.join(bases)}); serve them from one base")
    base = model or (bases[0] if bases else "default")
    if bases and base != bases[0]:
        raise ModPluralError(f"communities were trained on {bases[0]!r}, not on the requested model {base!r}")
    return LocalBackend(base, adapters={c.name: c.adapter for c in communities}, device=device, dtype=dtype, batch_size=batch_size)
