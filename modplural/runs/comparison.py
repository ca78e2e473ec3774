"""Comparing runs item by item: a task's headline numbers from per-item records, paired bootstrap effects of going
from one set of records to another over the items both hold, and the table cell that prints one. The study scripts
(``experiments/studies/fidelity.py``, ``pluralism_report.py``, ``calibration_report.py``) share these; they read stored
scores only."""

from __future__ import annotations

from typing import Callable

import numpy as np

from modplural.metrics import accuracy, macro_f1
from modplural.protocol import Protocol

Effect = tuple[float, float, float, int]  # (difference, 2.5%, 97.5%, n)


def headline(task: str, records: list[dict], protocol: Protocol) -> dict[str, float]:
    """The numbers a paper's table shows for ``task``, from per-item records."""
    if task.endswith("overton"):
        return {"coverage": float(np.mean([r["coverage"] for r in records]))}
    if task.endswith("steerable_vk"):
        gold, pred = [int(r["gold"]) for r in records], [int(r["pred"]) for r in records]
        labels = None if protocol.f1_labels == "present" else [0, 1, 2]
        if protocol.binary_filter == "gold_or_pred":
            pairs = [(g, p) for g, p in zip(gold, pred) if g != 2 and p != 2]
        else:
            pairs = [(int(r["gold"]), int(r.get("pred_binary", r["pred"]))) for r in records if r["gold"] != 2]
        out = {"accuracy": accuracy(gold, pred), "macro_f1": macro_f1(gold, pred, labels)}
        out["binary_accuracy"] = accuracy([g for g, _ in pairs], [p for _, p in pairs]) if pairs else float("nan")
        return out
    if task.endswith("steerable_opinionqa"):
        return {"accuracy": float(np.mean([r["correct"] for r in records])), "js_distance": float(np.mean([r["js_distance"] for r in records]))}
    return {"js_distance": float(np.mean([r["js_distance"] for r in records]))}


def paired_effect(a: dict[str, dict], b: dict[str, dict], stat: Callable[[list[dict], list[dict]], dict[str, tuple[float, float]]], resamples: int = 1000) -> dict[str, Effect]:
    """Per metric: (b - a, 2.5%, 97.5%, n) over the item ids both hold, resampled together."""
    ids = [i for i in a if i in b]
    if not ids:
        return {}
    rng = np.random.default_rng(0)
    point = stat([a[i] for i in ids], [b[i] for i in ids])
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(resamples):
        pick = [ids[j] for j in rng.integers(0, len(ids), len(ids))]
        for k, (x, y) in stat([a[i] for i in pick], [b[i] for i in pick]).items():
            if np.isfinite(x) and np.isfinite(y):
                draws[k].append(y - x)
    return {k: (y - x, *np.percentile(draws[k], [2.5, 97.5]), len(ids)) for k, (x, y) in point.items() if draws[k]}


def effect(task: str, a: dict[str, dict], protocol_a: Protocol, b: dict[str, dict], protocol_b: Protocol) -> dict[str, Effect]:
    """Headline metric -> paired effect of going from records (a) to records (b), both keyed by item id."""
    stat = lambda x, y: {k: (v, headline(task, y, protocol_b)[k]) for k, v in headline(task, x, protocol_a).items()}  # noqa: E731
    return paired_effect(a, b, stat)


def compare(task: str, scores_a: dict, protocol_a: Protocol, scores_b: dict, protocol_b: Protocol) -> dict[str, dict]:
    """method -> metric -> effect of going from (a) to (b)."""
    return {method: effect(task, scores_a[method], protocol_a, scores_b[method], protocol_b) for method in scores_a if method in scores_b}


def cell(effect: Effect | None) -> str:
    """A paired effect as ``+0.012 [-0.003, +0.027]``, `` *`` where the interval excludes 0."""
    if effect is None:
        return "—"
    value, low, high, _ = effect
    mark = " *" if low > 0 or high < 0 else ""
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]{mark}"
