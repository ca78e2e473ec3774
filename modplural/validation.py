"""Checks shared by every reader of user input: text and JSONL files, text values, numbers and weights.

Each check raises ``ModPluralError`` with a message that names what was wrong (``what``: a file, field or
option), so callers never let a ``ValueError``/``TypeError``/``UnicodeError`` reach the user.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any, Iterator, Sequence

from modplural.errors import ModPluralError

WEIGHT_NAMES = ("uniform", "registry")


def read_text(path: Path) -> str:
    """A UTF-8 text file (a UTF-8 byte-order mark is allowed); unreadable or non-UTF-8 files name the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModPluralError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModPluralError(f"{path}: not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at offset {exc.start})") from exc


def jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file; a line that is not UTF-8 text or not a
    JSON object is an error naming the file and line."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ModPluralError(f"{path}: line {line_no} is not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ModPluralError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ModPluralError(f"{path}: line {line_no} is not a JSON object")
            yield line_no, row


def jsonl_string(path: Path, line: int, row: dict, name: str) -> str:
    """Field ``name`` of a JSONL row, which must be a string; else an error naming the file, line and field."""
    value = row.get(name)
    if not isinstance(value, str):
        raise ModPluralError(f"{path}: line {line}: " + (f"field {name!r} is {json.dumps(value)[:40]}, not a string" if name in row else f"missing field {name!r}"))
    return value


def is_text(value: Any) -> bool:
    """A ``str`` that can be written as UTF-8 (no lone surrogates, as left by undecodable argv bytes or JSON escapes)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: Any, what: str) -> str:
    """``value`` if it is valid text, else an error naming ``what``."""
    if not isinstance(value, str):
        raise ModPluralError(f"{what} must be a string, got {type(value).__name__}")
    if not is_text(value):
        raise ModPluralError(f"{what} is not valid UTF-8 text")
    return value


def bad_text_location(data: Any) -> str | None:
    """Where a nested structure of dicts and lists holds a string (or key) that is not valid text, e.g. ``communities[0].name``."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if not is_text(value):
                return where or "the top level"
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and not is_text(key):
                    return f"{where}.<key>" if where else "a key"
                stack.append((f"{where}.{key}" if where else str(key), item))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def is_number(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def finite_float(value: Any, what: str) -> float:
    """``value`` as a finite float, or an error naming ``what`` (bools, NaN, infinities and huge ints are refused)."""
    if not is_number(value):
        raise ModPluralError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ModPluralError(f"{what} must be a finite number, got {value!r}")
    return number


def check_weights(weights: Any, what: str = "weights") -> tuple[float, ...]:
    """One finite, non-negative number per community, not all zero."""
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ModPluralError(f"{what} must be 'uniform', 'registry' or a list of numbers (one per community), got {weights!r}")
    values = tuple(finite_float(w, f"{what}[{i}]") for i, w in enumerate(weights))
    if any(v < 0 for v in values):
        raise ModPluralError(f"{what} must be non-negative, got {list(values)}")
    if values and max(values) == 0:
        raise ModPluralError(f"{what} sum to zero")
    return values


def check_distribution(values: Any, length: int, what: str) -> list[float]:
    """A probability distribution read back from a file: ``length`` finite non-negative numbers, not all zero."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ModPluralError(f"{what} must be a list of {length} probabilities, got {type(values).__name__}")
    if len(values) != length:
        raise ModPluralError(f"{what} has {len(values)} probabilities for {length} options")
    numbers_ = [finite_float(v, f"{what}[{i}]") for i, v in enumerate(values)]
    if any(v < 0 for v in numbers_) or not sum(numbers_) > 0:
        raise ModPluralError(f"{what} must be non-negative and not all zero, got {numbers_}")
    return numbers_


def normalise(values: Sequence[float]) -> list[float]:
    """Checked non-negative weights scaled to sum to 1; dividing by the largest first keeps huge weights from overflowing."""
    largest = max(values)
    scaled = [v / largest for v in values]
    total = sum(scaled)
    return [v / total for v in scaled]


def check_options(options: Any, what: str = "options") -> tuple[str, ...]:
    """A list or tuple of option strings (a single string is refused, not split into characters)."""
    if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise ModPluralError(f"{what} must be a list of strings, got {type(options).__name__} {options!r}")
    return tuple(options)


def check_count(value: int, what: str) -> int:
    """A count that must be at least 1 (token lengths, sizes)."""
    if value < 1:
        raise ModPluralError(f"{what} must be at least 1, got {value}")
    return value


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ModPluralError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return value


def parse_batch_size(value: int | str) -> int | str:
    """An int >= 1 or ``"auto"``."""
    if value == "auto":
        return value
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ModPluralError(f"batch_size must be a positive integer or 'auto', got {value!r}") from None
    if size < 1 or str(size) != str(value).strip():
        raise ModPluralError(f"batch_size must be a positive integer or 'auto', got {value!r}")
    return size
