"""Writing modplural's own files safely: a new file renamed into place, never an existing path opened for writing.

A planted symbolic link where one of our files belongs (``report.md``, ``view.html``, a temporary name) is refused,
never written through; a directory there is refused too. A reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from modplural.errors import ModPluralError


def check_own_path(path: Path) -> Path:
    """``path`` if modplural may (re)write it: absent or a regular file; a link or a directory is a one-line error."""
    if path.is_symlink():
        raise ModPluralError(f"{path} is a symbolic link: modplural writes its own files only, never through a link; remove it and run again")
    if path.exists() and not path.is_file():
        raise ModPluralError(f"{path} is not a regular file (a directory?): modplural writes its own file there; move it away and run again")
    return path


def own_directory(path: Path) -> Path:
    """``path`` as a directory of modplural's own files (created if missing); a link or a file there is an error."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ModPluralError(f"{path} should be a directory of modplural's files, but is {'a symbolic link' if path.is_symlink() else 'a file'}; "
                             "move it away and run again")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModPluralError(f"cannot create {path}: {exc.strerror or exc}") from exc
    return path


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a fresh temporary file beside it, renamed into place."""
    path = check_own_path(Path(path))
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ModPluralError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from other users
        os.replace(tmp, path)
    except OSError as exc:
        raise ModPluralError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def open_own(path: Path, mode: str):
    """Open one of modplural's own files for appending (``"a"``) or locking (``"a+"``) without following a link at
    ``path`` (created if missing); a link there is a one-line error."""
    flags = {"a": os.O_WRONLY, "a+": os.O_RDWR}[mode] | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    try:
        return os.fdopen(os.open(check_own_path(Path(path)), flags, 0o644), mode)
    except OSError as exc:
        raise ModPluralError(f"cannot open {path}: {exc.strerror or exc}") from exc
