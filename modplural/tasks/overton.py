"""Overton ValueKaleidoscope: comment on a situation so that every relevant value is covered."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from modplural.metrics import OVERTON_THRESHOLD, bootstrap, overton_coverage
from modplural.protocol import Protocol
from modplural.text import split_sentences
from modplural.tasks.base import Item, ItemError, Task, field, string_list
from modplural.types import Query


class OvertonTask(Task):
    """Coverage: per value, the best score of any response sentence against the value's explanation
    (entailment for ``nli``, cosine for ``embedding``); averaged over the situation's values."""

    name = "overton_valuekaleidoscope"
    mode = "overton"
    needs_scorer = True
    primary = ("coverage", True)
    headline = "coverage"

    def parse(self, path: Path, index: int, row: dict, protocol: Protocol) -> Item:
        values = string_list(path, index, row, "vrd")
        explanations = string_list(path, index, row, "explanation")
        if len(values) != len(explanations):
            raise ItemError(f"{path}: item {index}: 'vrd' has {len(values)} values but 'explanation' has {len(explanations)}")
        query = Query(field(path, index, row, "input"), situation=field(path, index, row, "situation"))
        return Item(str(field(path, index, row, "id", (int, str))), query, {"values": values, "explanations": explanations})

    def item_metrics(self, item: Item, result: dict, protocol: Protocol, scorer=None) -> dict[str, float]:
        sentences = split_sentences(result.get("response") or "")
        scores = scorer.score(item.gold["explanations"], sentences)
        coverage = overton_coverage(scores, empty=protocol.empty_response)
        return {"coverage": coverage, "above_threshold": float(coverage > OVERTON_THRESHOLD), "sentences": float(len(sentences))}

    def aggregate(self, items: Sequence[Item], records: Sequence[dict], protocol: Protocol) -> dict:
        return {
            "coverage": bootstrap([r["coverage"] for r in records]).as_dict(),
            f"share_above_{OVERTON_THRESHOLD}": bootstrap([r["above_threshold"] for r in records]).as_dict(),
            "sentences_per_response": bootstrap([r["sentences"] for r in records]).as_dict(),
        }
