"""Scoring a run from its stored predictions alone (as inspect_ai re-scores a saved log): no generator is loaded,
and nothing here imports the generation stack. ``score`` writes metrics.json and scores.json (or
metrics.<scorer>.json with another Overton scorer, and metrics.raw.json under calibration)."""

from __future__ import annotations

from pathlib import Path

from modplural.errors import ModPluralError
from modplural.metrics import paired_bootstrap
from modplural.protocol import Protocol
from modplural.runs.config import PRIMARY
from modplural.runs.plan import RunPlan
from modplural.tasks import Item, Task
from modplural.validation import check_distribution


def score(plan: RunPlan, scorer_name: str | None = None, nli_model: str | None = None) -> dict:
    """Metrics per task and method from the stored predictions (no generator is loaded), plus paired comparisons
    with ``modular``. Writes metrics.json and scores.json, or metrics.<scorer>.json with another Overton scorer."""
    scorer_name = scorer_name or plan.config.scorer
    suffix = None if scorer_name == plan.config.scorer and (nli_model is None or nli_model == plan.config.nli_model) else scorer_name
    manifest = plan.directory.manifest()
    if "finished" not in manifest:
        raise ModPluralError(f"{plan.directory.path}: the run is unfinished (no 'finished' in manifest.json); run `modplural run` again to finish it")
    scorer = None
    if any(task.needs_scorer for task, *_ in plan.tasks.values()):
        from modplural.scorers import build_scorer

        scorer = build_scorer(scorer_name, nli_model if nli_model is not None else plan.config.nli_model)
    metrics, scores = compute_metrics(plan, plan.protocol, scorer)
    metrics = {"protocol": plan.protocol.name, "scorer": {"name": scorer_name, "identity": getattr(scorer, "identity", None), "proxy": getattr(scorer, "proxy", None)} if scorer else None, **metrics}
    plan.directory.write_json(plan.directory.metrics_path(suffix).name, metrics)
    plan.directory.write_json(plan.directory.scores_path(suffix).name, scores)
    if plan.protocol.calibration != "none" and suffix is None:
        raw, raw_scores = compute_metrics(plan, plan.protocol, raw=True)
        plan.directory.write_json(plan.directory.metrics_path("raw").name, {"protocol": plan.protocol.name, "reading": "raw (uncalibrated) distributions", **raw})
        plan.directory.write_json(plan.directory.scores_path("raw").name, raw_scores)
    return metrics


def compute_metrics(plan: RunPlan, protocol: Protocol, scorer=None, raw: bool = False) -> tuple[dict, dict]:
    """(metrics, per-item scores) of the stored predictions under ``protocol``'s scoring definitions; kept
    one-option items count only where ``protocol`` keeps them. ``raw``: the option tasks only, scored on each
    prediction's raw (uncalibrated) distribution where it has one."""
    out: dict = {"tasks": {}, "paired": {}}
    scores: dict = {}
    for task_name, (task, _, items, _) in plan.tasks.items():
        if raw and task.needs_scorer:
            continue
        if protocol.single_option_items == "drop":
            items = [i for i in items if i.fixed is None]
        per_method: dict[str, dict[str, dict]] = {}
        for method_name in plan.config.methods:
            results = {r["id"]: _raw(r["result"]) if raw else r["result"] for r in plan.directory.read_predictions(task_name, method_name)}
            missing = [i.id for i in items if i.id not in results]
            if missing:
                raise ModPluralError(f"{plan.directory.predictions_path(task_name, method_name)}: {len(missing)} of {len(items)} items have no prediction (first: {missing[0]}); the run is unfinished")
            where = plan.directory.predictions_path(task_name, method_name)
            records = [task.item_metrics(i, _checked(results[i.id], i, where), protocol, scorer) for i in items]
            out["tasks"].setdefault(task_name, {})[method_name] = task.aggregate(items, records, protocol)
            per_method[method_name] = {i.id: r for i, r in zip(items, records)}
        out["paired"][task_name] = paired_with_primary(task, per_method)
        scores[task_name] = per_method
    return out, scores


def paired_with_primary(task: Task, per_method: dict[str, dict[str, dict]]) -> dict:
    """Paired bootstrap comparisons of ``modular`` with every other method on the items both scored."""
    if PRIMARY not in per_method:
        return {}
    key, higher_is_better = task.primary
    comparisons = {}
    for other, records in per_method.items():
        if other == PRIMARY:
            continue
        shared = [i for i in per_method[PRIMARY] if i in records]
        if len(shared) >= 2:
            a = [task.item_score(per_method[PRIMARY][i]) for i in shared]
            b = [task.item_score(records[i]) for i in shared]
            comparisons[f"{PRIMARY} - {other}"] = {"metric": key, "higher_is_better": higher_is_better, **paired_bootstrap(a, b)}
    return comparisons


def _checked(result: dict, item: Item, where: Path) -> dict:
    """``result`` with its distribution checked (finite, non-negative, not all zero, one number per option) where the
    item has options; a damaged prediction is a one-line error naming the file and item."""
    options = item.query.options if item.query is not None else (item.fixed or {}).get("options")
    if not options:
        return result  # Overton, or a free-text steerable answer (steerable_answer: parse)
    distribution = check_distribution(result.get("distribution"), len(options), f"{where}: item {item.id}: 'distribution'")
    return {**result, "distribution": distribution}


def _raw(result: dict) -> dict:
    """A prediction with its raw (uncalibrated) distribution in place of the calibrated one, where it has one."""
    return {**result, "distribution": result["raw_distribution"]} if result.get("raw_distribution") is not None else result
