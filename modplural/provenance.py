"""What a manifest records to say where a result came from: file hashes, the git commit, package versions."""

from __future__ import annotations

import hashlib
import importlib
import platform
import subprocess
from pathlib import Path

from modplural.data_paths import REPO_ROOT


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str | None:
    """The source tree's HEAD commit, or None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions(*extra: str) -> dict[str, str]:
    """Versions of modplural, torch, transformers, peft, the ``extra`` packages and Python (packages imported here, lazily)."""
    from modplural.version import __version__

    packages = {name: importlib.import_module(name).__version__ for name in ("torch", "transformers", "peft", *extra)}
    return {"modplural": __version__, **packages, "python": platform.python_version()}
