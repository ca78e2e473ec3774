"""The one strict JSON file reader: UTF-8, valid JSON of the expected kind, and a one-line error naming the file otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modplural.errors import ModPluralError


def parse_json(text: str | bytes, where: str, one_line: bool = False) -> Any:
    """``text`` parsed as JSON; bad UTF-8 or JSON, an integer too large for a float or thousands of nested brackets
    are a one-line error: ``{where}: not valid JSON (...)``, or ``{where} is not valid JSON (...)`` for ``one_line``
    text (a JSON Lines line, whose own line number would mislead)."""
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text, parse_int=_bounded_int)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a number beyond a float, deep nesting
        if isinstance(exc, json.JSONDecodeError):
            reason = exc.msg if one_line else f"line {exc.lineno}: {exc.msg}"
        else:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModPluralError(f"{where} is not valid JSON ({reason})" if one_line else f"{where}: not valid JSON ({reason})") from exc


def _bounded_int(digits: str) -> int:
    """A JSON integer, refused where no float can hold it (every reader compares numbers as floats)."""
    if len(digits.lstrip("-")) > 308:
        raise ValueError(f"a number of {len(digits.lstrip('-'))} digits, beyond any float")
    return int(digits)


def read_json(path: Path, kind: type = dict, missing: str | None = None) -> Any:
    """The JSON value of kind ``kind`` (``dict`` or ``list``) in ``path``; ``missing`` is the error for an absent file."""
    path = Path(path)
    if not path.is_file():
        raise ModPluralError(missing or f"{path} is missing")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModPluralError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    data = parse_json(raw, str(path))
    if not isinstance(data, kind):
        raise ModPluralError(f"{path}: expected a JSON {'object' if kind is dict else 'list'}, not {type(data).__name__}")
    return data
