"""YAML config files -> validated dataclasses: unknown keys and wrong types are errors naming file and field."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from modplural.errors import ModPluralError

T = TypeVar("T")


def read_yaml(path: Path, extends_key: str | None = "extends") -> dict[str, Any]:
    """Read a YAML mapping; ``extends: other.yaml`` (relative to the file) merges the other file underneath."""
    if not path.is_file():
        raise ModPluralError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ModPluralError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ModPluralError(f"{path}: expected a mapping at the top level")
    if extends_key and extends_key in data:
        parent = read_yaml(path.parent / str(data.pop(extends_key)), extends_key)
        data = {**parent, **data}
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
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def from_mapping(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown or missing fields and wrong types raise ModPluralError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in data.items():
        if key not in fields:
            raise ModPluralError(f"{where}: unknown field {key!r} (allowed: {', '.join(fields)})")
        if not _matches(value, hints[key]):
            raise ModPluralError(f"{where}: field {key!r} has a bad value {value!r}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ModPluralError(f"{where}: missing field(s) {', '.join(missing)}")
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    try:
        return cls(**values)
    except ModPluralError as exc:
        raise ModPluralError(f"{where}: {exc}") from exc
