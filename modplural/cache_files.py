"""The model cache (``MODPLURAL_CACHE``) and writing into it: one process at a time per entry, and one error when the cache cannot be written."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from modplural.errors import ModPluralError


def cache_dir() -> Path:
    """The directory for converted models and other caches (``MODPLURAL_CACHE``)."""
    return Path(os.environ.get("MODPLURAL_CACHE") or Path.home() / ".cache" / "modplural").expanduser()


def write_error(directory: Path, exc: OSError) -> ModPluralError:
    """The one-line error for a cache directory that cannot be written."""
    return ModPluralError(f"cannot write the model cache {directory}: {exc.strerror or exc} (set MODPLURAL_CACHE to a writable directory)")


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created with its directory if needed): other processes wait, then
    find the finished entry. Raises ``write_error`` when the lock cannot be created."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = os.fdopen(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644), "w")  # never through a planted link
    except OSError as exc:
        raise write_error(lock.parent, exc) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def directory_once(final: Path, marker: str, fill: Callable[[Path], None]) -> Path:
    """``final``, a cache directory complete once it holds ``marker``: if missing, ``fill`` writes it into a temporary
    directory beside it, under the entry's lock, and it is renamed into place (never half-written). Errors raised by
    ``fill`` pass through unchanged."""
    if (final / marker).is_file():
        return final
    with exclusive(final.parent / f".{final.name}.lock"):
        if (final / marker).is_file():
            return final
        try:
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        except OSError as exc:
            raise write_error(final.parent, exc) from exc
        try:
            fill(tmp)  # its own errors are its own (a model that cannot be read is not a cache that cannot be written)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                raise write_error(final.parent, exc) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
