"""YAML config files -> validated dataclasses: unknown keys and wrong types are errors naming file and field."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from modplural.errors import ModPluralError
from modplural.validation import bad_text_location, read_text

T = TypeVar("T")


# Besides YAMLError, PyYAML's constructors let these out on malformed values (`2020-13-45`, `!!int x`,
# `!!timestamp x`, a 5000-digit integer, thousands of nested brackets).
_PARSER_ERRORS = (yaml.YAMLError, ValueError, TypeError, AttributeError, RecursionError)


def _parse_yaml(path: Path) -> dict[str, Any]:
    """One YAML file's top-level mapping, with every string valid UTF-8 text."""
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except _PARSER_ERRORS as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModPluralError(f"{path}: not valid YAML: {detail}") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ModPluralError(f"{path}: expected a mapping at the top level")
    bad = bad_text_location(data)
    if bad:
        raise ModPluralError(f"{path}: {bad} is not valid UTF-8 text")
    return data


def read_yaml(path: Path, extends_key: str | None = "extends") -> dict[str, Any]:
    """Read a YAML mapping; ``extends: other.yaml`` (relative to the file) merges the other file underneath."""
    return _read_extending(path, extends_key, ())


def _read_extending(path: Path, extends_key: str | None, chain: tuple[Path, ...]) -> dict[str, Any]:
    """``read_yaml`` for a file reached through ``chain`` (the files that extend it); a file met twice is a cycle."""
    if not path.is_file():
        raise ModPluralError(f"config file not found: {path}")
    here = path.resolve()
    if here in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(here):], here))
        raise ModPluralError(f"{chain[0]}: 'extends' forms a cycle: {cycle}")
    data = _parse_yaml(path)
    if extends_key and extends_key in data:
        parent = data.pop(extends_key)
        if not isinstance(parent, str) or not parent.strip():
            raise ModPluralError(f"{path}: field {extends_key!r} must be a file name, got {parent!r}")
        data = {**_read_extending(path.parent / parent, extends_key, (*chain, here)), **data}
    return data


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(annotation) or (typing.Any,)
        return isinstance(value, (list, tuple)) and all(_matches(v, inner) for v in value)
    if origin is dict or dataclasses.is_dataclass(annotation):
        return isinstance(value, dict)
    if annotation is Path:
        return isinstance(value, str)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


_NOUNS = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "mapping", Path: "path"}


def _expected(annotation: Any, plural: bool = False) -> str:
    """What a field's type asks for, in words: ``a number``, ``a list of strings or null``."""
    origin = typing.get_origin(annotation)
    if annotation is typing.Any:
        return "anything"
    if annotation is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a, plural) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(annotation) or (typing.Any,)
        return ("lists" if plural else "a list") + ("" if inner is typing.Any else f" of {_expected(inner, plural=True)}")
    noun = "mapping" if dataclasses.is_dataclass(annotation) else _NOUNS.get(origin or annotation, getattr(annotation, "__name__", str(annotation)))
    return f"{noun}s" if plural else f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """A checked value as the dataclass holds it: a mapping as a nested dataclass, a string as a Path, a list as a tuple
    (also where the field may be null: ``Path | None``, ``Corpus | None``)."""
    optional = [a for a in typing.get_args(annotation) if a is not type(None)] if typing.get_origin(annotation) in (typing.Union, types.UnionType) else []
    if value is not None and len(optional) == 1:
        annotation = optional[0]
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, where)
    if annotation is Path:
        return Path(value)
    return tuple(value) if isinstance(value, list) else value


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from the mapping ``data``; unknown or missing fields and wrong types raise ModPluralError
    naming ``where`` and the field. A dataclass-typed field is read from a mapping in turn (errors name ``where.field``);
    a ``Path`` field from a string."""
    if not isinstance(data, dict):
        raise ModPluralError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in data.items():
        if key not in fields:
            raise ModPluralError(f"{where}: unknown field {key!r} (allowed: {', '.join(fields)})")
        if not _matches(value, hints[key]):
            raise ModPluralError(f"{where}: field {key!r} has a bad value {value!r} (expected {_expected(hints[key])})")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ModPluralError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    values = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except ModPluralError as exc:
        raise ModPluralError(f"{where}: {exc}") from exc
