"""Steerable tasks: ValueKaleidoscope (does a value support / oppose the situation?) and OpinionQA (answer as a group)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from modplural.method_base import Query
from modplural.metrics import accuracy, argmax_match, balanced_accuracy, bootstrap, js_distance, macro_f1
from modplural.tasks.base import Item, ItemError, Task, field, per_group, survey_row

VK_LABELS = ("A", "B", "C")
VK_OPTIONS = ("Support", "Oppose", "Either")
# OpinionQA attribute prefixes -> the wording Modular Pluralism uses for them
OPINIONQA_CATEGORIES = {
    "POLPARTY": "political party", "POLIDEOLOGY": "political ideology", "RELIG": "religion", "RACE": "race",
    "EDUCATION": "education", "INCOME": "income", "CREGION": "region in the United States", "SEX": "sex",
}


class SteerableValueKaleidoscope(Task):
    """Accuracy, balanced accuracy and macro-F1, three-way and binary (items whose gold is not "either",
    predicting the likelier of support / oppose)."""

    name = "steerable_valuekaleidoscope"
    mode = "steer"
    primary = ("accuracy", True)

    def item_score(self, metrics: dict[str, float]) -> float:
        return float(metrics["pred"] == metrics["gold"])

    def parse(self, path: Path, index: int, row: dict) -> Item:
        label = field(path, index, row, "label")
        if label not in VK_LABELS:
            raise ItemError(f"{path}: item {index}: field 'label' is {label!r}, expected one of A, B, C")
        value = field(path, index, row, "vrd")
        query = Query(field(path, index, row, "input"), options=VK_OPTIONS, attribute=f"the value of {value}")
        return Item(str(field(path, index, row, "id", (int, str))), query, {"label": label}, group=None)

    def item_metrics(self, item: Item, result: dict, scorer=None) -> dict[str, float]:
        dist = result["distribution"]
        return {"pred": float(int(np.argmax(dist))), "pred_binary": float(int(np.argmax(dist[:2]))), "gold": float(VK_LABELS.index(item.gold["label"]))}

    def aggregate(self, items: Sequence[Item], records: Sequence[dict]) -> dict:
        pairs = [(int(r["gold"]), int(r["pred"])) for r in records]
        binary = [(int(r["gold"]), int(r["pred_binary"])) for r in records if r["gold"] != 2]
        out = {}
        for prefix, rows in (("", pairs), ("binary_", binary)):
            if not rows:
                continue
            out[f"{prefix}accuracy"] = bootstrap(rows, lambda s: accuracy([g for g, _ in s], [p for _, p in s])).as_dict()
            out[f"{prefix}balanced_accuracy"] = bootstrap(rows, lambda s: balanced_accuracy([g for g, _ in s], [p for _, p in s])).as_dict()
            labels = [0, 1] if prefix else [0, 1, 2]
            out[f"{prefix}macro_f1"] = bootstrap(rows, lambda s, labels=labels: macro_f1([g for g, _ in s], [p for _, p in s], labels)).as_dict()
        return out


def opinionqa_framing(attribute: str) -> tuple[str, str]:
    """``POLPARTY_Democrat`` -> (selection attribute, persona sentence), worded as in Modular Pluralism."""
    category, _, value = attribute.partition("_")
    if not value:
        raise ItemError(f"attribute {attribute!r} is not of the form CATEGORY_value")
    name = OPINIONQA_CATEGORIES.get(category, category.lower())
    return f"the people of {value} in terms of {name}", f"In terms of {name}, you are {value}."


class SteerableOpinionQA(Task):
    """Most-likely-answer correctness (argmax match with the group's distribution), and mean JS distance."""

    name = "steerable_opinionqa"
    mode = "steer"
    primary = ("correct", True)

    def parse(self, path: Path, index: int, row: dict) -> Item | str:
        survey = survey_row(path, index, row)
        if isinstance(survey, str):
            return survey
        try:
            selection, persona = opinionqa_framing(survey.attribute)
        except ItemError as exc:
            raise ItemError(f"{path}: item {index}: field 'attribute': {exc}") from exc
        query = Query(survey.question, options=survey.options, attribute=selection, persona=persona)
        return Item(f"{survey.id}|{survey.attribute}", query, {"distribution": survey.gold}, group=survey.attribute)

    def item_metrics(self, item: Item, result: dict, scorer=None) -> dict[str, float]:
        gold, pred = item.gold["distribution"], result["distribution"]
        return {"correct": argmax_match(gold, pred), "js_distance": js_distance(gold, pred)}

    def aggregate(self, items: Sequence[Item], records: Sequence[dict]) -> dict:
        return {
            "accuracy": bootstrap([r["correct"] for r in records]).as_dict(),
            "js_distance": bootstrap([r["js_distance"] for r in records]).as_dict(),
            "per_attribute_accuracy": per_group(items, records, "correct"),
        }

