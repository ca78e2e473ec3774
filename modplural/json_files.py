"""The one strict JSON file reader: UTF-8, valid JSON of the expected kind, and a one-line error naming the file otherwise."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from modplural.errors import ModPluralError
from modplural.validation import bad_text_location


def parse_json(text: str | bytes, where: str, one_line: bool = False, refuse_lone_surrogates: bool = True) -> Any:
    """``text`` parsed as JSON; bad UTF-8 or JSON, an integer too large for a float, thousands of nested brackets or
    (unless the caller names the field itself: ``refuse_lone_surrogates=False``) a string no UTF-8 file can hold are a
    one-line error: ``{where}: not valid JSON (...)``, or ``{where} is not valid JSON (...)`` for ``one_line`` text (a
    JSON Lines line, whose own line number would mislead)."""
    try:
        decoded = text.decode("utf-8") if isinstance(text, bytes) else text
        value = json.loads(decoded, parse_int=_bounded_int)
        if refuse_lone_surrogates and _SURROGATE_ESCAPE.search(decoded) and (where_bad := bad_text_location(value)):
            raise ValueError(f"a lone surrogate escape at {where_bad}, not text")  # no UTF-8 file, page or log can hold it
        return value
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a number beyond a float, deep nesting
        if isinstance(exc, json.JSONDecodeError):
            reason = exc.msg if one_line else f"line {exc.lineno}: {exc.msg}"
        else:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModPluralError(f"{where} is not valid JSON ({reason})" if one_line else f"{where}: not valid JSON ({reason})") from exc


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # JSON's spelling of a UTF-16 surrogate, paired or not


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
