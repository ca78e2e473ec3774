"""Reference rows that need no model: what a method's distributions must beat before they say anything.

* ``uniform``: the uniform distribution over each item's options.
* ``population prior``: the mean gold distribution of the same question over the task file's other groups
  (leave-one-out: never the item's own gold), on survey tasks where a question is asked of several groups
  (steerable OpinionQA, GlobalOpinionQA); an item whose question no other group answered gets the uniform
  distribution (``prior_items`` counts the items that had a prior).

Both are scored by the task's own ``item_metrics``, like any prediction. They apply to tasks whose gold is a
distribution; on ValueKaleidoscope (a gold label) a uniform guess is right a third of the time in expectation.
"""

from __future__ import annotations

from typing import Sequence

from modplural.protocol import Protocol
from modplural.tasks.base import Item, Task

UNIFORM = "uniform (no model)"
PRIOR = "population prior (no model)"


def has_gold_distributions(items: Sequence[Item]) -> bool:
    return bool(items) and all(item.gold.get("distribution") is not None for item in items)


def uniform(item: Item) -> list[float]:
    n = len(item.gold["distribution"])
    return [1.0 / n] * n


def _question(item: Item) -> tuple | None:
    return (item.query.text, item.query.options) if item.query is not None else None


def population_priors(items: Sequence[Item], every_item: Sequence[Item]) -> dict[str, list[float]]:
    """Per item of ``items``: the mean gold distribution of its question over the other items of ``every_item``
    (the whole task file) that ask the same question with the same options; items without one are left out."""
    by_question: dict[tuple, list[Item]] = {}
    for other in every_item:
        if _question(other) is not None:
            by_question.setdefault(_question(other), []).append(other)
    priors = {}
    for item in items:
        others = [o for o in by_question.get(_question(item), []) if o.id != item.id]
        if others:
            golds = [o.gold["distribution"] for o in others]
            priors[item.id] = [sum(column) / len(golds) for column in zip(*golds)]
    return priors


def reference_scores(task: Task, items: Sequence[Item], every_item: Sequence[Item], protocol: Protocol) -> dict[str, dict]:
    """label -> {"scores": item id -> per-item metrics, "prior_items": n (prior only)} for the references that apply
    to ``task`` on ``items``; {} where its gold is not a distribution."""
    if not has_gold_distributions(items):
        return {}

    def scored(distributions: dict[str, list[float]]) -> dict[str, dict]:
        return {item.id: task.item_metrics(item, {"distribution": distributions[item.id]}, protocol) for item in items}

    out = {UNIFORM: {"scores": scored({item.id: uniform(item) for item in items})}}
    priors = population_priors(items, every_item)
    if priors:
        out[PRIOR] = {"scores": scored({item.id: priors.get(item.id) or uniform(item) for item in items}), "prior_items": len(priors)}
    return out
