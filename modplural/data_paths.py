"""Where the data lives: ``--data-dir``, else ``MODPLURAL_DATA``, else ``../shared/data`` next to the checkout."""

from __future__ import annotations

import os
from pathlib import Path

from modplural.errors import ModPluralError

DATA_ENV = "MODPLURAL_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data root; raises a clear error when none is found."""
    candidates = [explicit, os.environ.get(DATA_ENV), REPO_ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_dir():
                return path
            if candidate is not candidates[-1]:
                raise ModPluralError(f"data directory not found: {path}")
    raise ModPluralError(f"no data directory: pass --data-dir or set {DATA_ENV}")
