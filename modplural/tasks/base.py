"""A task owns its data format and its metric inputs; it knows nothing about methods.

``Task.load`` validates every item (errors name the file, item index and field), ``Task.item_metrics``
turns one method result into per-item numbers, and ``Task.aggregate`` turns per-item numbers into the
paper's metrics with bootstrap confidence intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from modplural.errors import ModPluralError
from modplural.protocol import Protocol
from modplural.types import Mode, Query
from modplural.validation import bad_text_location, finite_float, is_number, read_text
from modplural.json_files import parse_json


@dataclass(frozen=True)
class Item:
    """One task item: the method's input, what scoring needs, and the group for per-attribute breakdowns."""

    id: str
    query: Query | None
    gold: dict[str, Any]
    group: str | None = None
    fixed: dict | None = None  # a result every method gives without being asked (a kept one-option item), else None


class ItemError(ModPluralError):
    """A problem with one item of a task file."""


def read_items(path: Path) -> list[dict]:
    """A JSON list of objects (the released VITAL / Modular Pluralism format)."""
    if not path.is_file():
        raise ModPluralError(f"task file not found: {path} (pass --data-dir, or run `modplural data download vital`)")
    data = parse_json(read_text(path), str(path), refuse_lone_surrogates=False)  # each field is checked and named below
    if not isinstance(data, list):
        raise ModPluralError(f"{path}: expected a JSON list of items")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ModPluralError(f"{path}: item {i}: expected an object")
        bad = bad_text_location(row)
        if bad:
            raise ModPluralError(f"{path}: item {i}: field {bad} is not valid UTF-8 text")
    return data


def field(path: Path, index: int, row: dict, name: str, kind: type | tuple = str) -> Any:
    """A required field of the expected type, or an error naming file, item index and field."""
    if name not in row or row[name] is None:
        raise ItemError(f"{path}: item {index}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ItemError(f"{path}: item {index}: field {name!r} has the wrong type ({type(value).__name__})")
    if isinstance(value, str) and not value.strip():
        raise ItemError(f"{path}: item {index}: field {name!r} is empty")
    return value


def distribution(path: Path, index: int, row: dict, name: str, length: int) -> list[float]:
    """A gold distribution: numbers, one per option, summing to 1 (within 1e-3)."""
    values = field(path, index, row, name, list)
    if len(values) != length or not all(is_number(v) for v in values):
        raise ItemError(f"{path}: item {index}: field {name!r} must hold {length} numbers, one per option (has {len(values)})")
    numbers = [finite_float(v, f"field {name!r}[{i}]") for i, v in enumerate(values)]  # Task.load adds file and item
    if any(v < 0 for v in numbers) or not math.isclose(sum(numbers), 1.0, abs_tol=1e-3):
        raise ItemError(f"{path}: item {index}: field {name!r} must be non-negative and sum to 1 (sums to {sum(numbers):.4f})")
    return numbers


def string_list(path: Path, index: int, row: dict, name: str) -> list[str]:
    values = field(path, index, row, name, list)
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise ItemError(f"{path}: item {index}: field {name!r} must be a non-empty list of non-empty strings")
    return values


def option_problem(options: Sequence[str]) -> str | None:
    """Why an item's options cannot be answered as a distribution (it is then left out, with a note), or None."""
    if len(options) < 2:
        return "has a single option; a distribution over it is trivially right"
    if len({o.strip().lower() for o in options}) != len(options):
        return f"has duplicate options {options}"
    return None


@dataclass(frozen=True)
class SurveyRow:
    """The fields shared by the multiple-choice survey formats (OpinionQA, GlobalOpinionQA, MoralChoice)."""

    id: str
    question: str
    options: tuple[str, ...]
    gold: list[float]
    attribute: str


def survey_row(path: Path, index: int, row: dict, protocol: Protocol) -> SurveyRow | str:
    """A validated survey row, or a note saying why the item is left out (``single_option_items: keep`` keeps one-option items)."""
    options = string_list(path, index, row, "options")
    gold = distribution(path, index, row, "gold_distribution", len(options))
    item_id = str(field(path, index, row, "id", (int, str)))
    attribute = field(path, index, row, "attribute")
    problem = option_problem(options)
    if problem and not (len(options) == 1 and protocol.single_option_items == "keep"):
        return f"item {index} (id {item_id}) {problem}"
    return SurveyRow(item_id, field(path, index, row, "question"), tuple(options), gold, attribute)


def survey_item(item_id: str, survey: SurveyRow, query: Query | None, group: str) -> Item:
    """A survey item; a kept one-option item needs no method: its answer is all mass on that option (JS 0, correct)."""
    if len(survey.options) == 1:
        return Item(item_id, None, {"distribution": survey.gold}, group, fixed={"options": list(survey.options), "distribution": [1.0], "option_mass": None})
    return Item(item_id, query, {"distribution": survey.gold}, group)


def per_group(items: Sequence[Item], records: Sequence[dict], key: str) -> dict[str, dict]:
    """Mean of a per-item metric for each item group (attribute)."""
    groups: dict[str, list[float]] = {}
    for item, record in zip(items, records):
        groups.setdefault(item.group or "all", []).append(record[key])
    return {g: {"value": sum(v) / len(v), "n": len(v)} for g, v in sorted(groups.items())}


class Task:
    """Base class; subclasses set ``mode``, ``primary`` and ``headline`` and implement ``parse``, ``item_metrics`` and ``aggregate``."""

    name = "task"
    mode: Mode = "overton"
    needs_scorer = False
    primary: tuple[str, bool] = ("score", True)  # per-item metric compared between methods, and whether higher is better
    headline = "score"  # the aggregate metric reports plot: it summarises ``primary``, so its direction is ``primary``'s

    def item_score(self, metrics: dict[str, float]) -> float:
        """The per-item number behind ``primary`` (paired comparisons)."""
        return metrics[self.primary[0]]

    def load(self, path: Path, protocol: Protocol) -> tuple[list[Item], list[str]]:
        """Validated items, and notes on items left out (e.g. single-option questions), never silently."""
        items, skipped = [], []
        for index, row in enumerate(read_items(path)):
            try:
                item = self.parse(path, index, row, protocol)
            except ItemError:
                raise
            except ModPluralError as exc:
                raise ItemError(f"{path}: item {index}: {exc}") from exc
            if isinstance(item, str):
                skipped.append(item)
            else:
                items.append(item)
        ids = [i.id for i in items]
        if len(set(ids)) != len(ids):
            raise ModPluralError(f"{path}: item ids are not unique")
        return items, skipped

    def parse(self, path: Path, index: int, row: dict, protocol: Protocol) -> Item | str:
        raise NotImplementedError

    def item_metrics(self, item: Item, result: dict, protocol: Protocol, scorer=None) -> dict[str, float]:
        raise NotImplementedError

    def aggregate(self, items: Sequence[Item], records: Sequence[dict], protocol: Protocol) -> dict:
        raise NotImplementedError
