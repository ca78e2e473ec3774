"""Seeds and seeded orders from text: reproducible across runs and machines, independent of batching."""

from __future__ import annotations

import hashlib
from typing import Any


def seeded_key(*parts: Any) -> str:
    """The sha256 hex digest of the parts joined by ``|``: a sort key for a seeded order."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def derived_seed(*parts: Any) -> int:
    """A 32-bit seed from text parts (the first 8 hex digits of ``seeded_key``)."""
    return int(seeded_key(*parts)[:8], 16)
