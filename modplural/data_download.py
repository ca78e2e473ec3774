"""``modplural data download vital``: fetch VITAL's released task files for users with internet access.

A file is saved only when all of it arrived within the timeout and it is what VITAL releases, a JSON list of
objects (not an HTML error page, not a body cut short); it is written beside its final name and renamed into place,
so nothing half-written is ever left there. Any file that could not be fetched makes the command fail, after the
others were tried.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
from pathlib import Path
from typing import Iterator

from modplural.atomic_files import write_atomic
from modplural.backends.openai_compat import check_base_url, deadline_opener
from modplural.errors import ModPluralError

VITAL_BASE_URL = "https://raw.githubusercontent.com/anudeex/VITAL/main/dataset/"
VITAL_FILES = (
    "vital_overton_valuekaleidoscope.json",
    "vital_steerable_valuekaleidoscope.json",
    "vital_steerable_opinionqa.json",
    "vital_distributional_moralchoice.json",
    "vital_distributional_globalopinionqa.json",
)
_OPENER = deadline_opener()


class _Refused(Exception):
    """A file that arrived but is not a VITAL task file."""


def download_vital(data_dir: Path, base_url: str = VITAL_BASE_URL, timeout: float = 30) -> Iterator[str]:
    """Download the VITAL files into ``data_dir/vital``, yielding one line per file (fetched or kept); a one-line error
    at the end names the files that failed. ``timeout`` bounds each file's whole download."""
    try:
        base = check_base_url(base_url) + "/"
    except ModPluralError as exc:
        raise ModPluralError(f"--base-url: {exc}") from None
    target = data_dir / "vital"
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModPluralError(f"cannot create {target}: {exc.strerror or exc} (choose another --data-dir)") from None
    failures: dict[str, list[str]] = {}  # why -> the files that failed so
    answered = False  # whether any request got an answer (else: no internet access?)
    for name in VITAL_FILES:
        path = target / name
        if path.is_file():
            yield f"kept    {path} (already there)"
            continue
        try:
            payload = _fetch(base + name, timeout)
            write_atomic(path, payload)
        except (_Refused, urllib.error.URLError, http.client.HTTPException, OSError, ModPluralError) as exc:
            answered |= not isinstance(exc, urllib.error.URLError) or isinstance(exc, urllib.error.HTTPError)
            failures.setdefault(_reason(exc, timeout), []).append(name)
            continue
        answered = True
        yield f"fetched {path} ({len(payload)} bytes)"
    if failures:
        hint = "" if answered else " (no internet access?)"
        why = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in failures.items())
        raise ModPluralError(f"could not download {sum(map(len, failures.values()))} of {len(VITAL_FILES)} VITAL files from {base}{hint}: "
                             f"{why}; rerun, or put the files in a directory and pass it with --data-dir or MODPLURAL_DATA")


def _fetch(url: str, timeout: float) -> bytes:
    """The whole body at ``url``, checked to be a JSON list of objects."""
    with _OPENER.open(url, timeout=timeout) as response:
        content_type = response.headers.get_content_type()
        payload = response.read()
    if content_type == "text/html":
        raise _Refused("the server sent an HTML page (Content-Type text/html), not the JSON task file")
    try:
        rows = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        rows = None
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise _Refused("the body is not a JSON list of objects, as VITAL's task files are")
    return payload


def _reason(exc: Exception, timeout: float) -> str:
    """Why a download failed, in a few words."""
    reason = getattr(exc, "reason", exc)
    if isinstance(exc, _Refused):
        return str(exc)
    if isinstance(reason, TimeoutError):
        return f"not all of it arrived within {timeout:g} s"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the body was cut short ({len(exc.partial)} bytes of {len(exc.partial) + (exc.expected or 0)})"
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    return " ".join(str(reason).split()) or type(exc).__name__

