"""A finished run directory -> one self-contained HTML page to browse it (``modplural view``).

The page needs no server and fetches nothing: the run's items, every method's answers, community messages,
selection scores, distributions and per-item metrics go in as one inline JSON blob, drawn by a small inline
script that only ever sets text (never HTML), so model output cannot inject markup. Filters live in the
address's fragment (``#task=vital_overton&methods=modular,vanilla&sort=modular-vanilla``), so a link restores a view.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from modplural.atomic_files import write_atomic
from modplural.errors import ModPluralError
from modplural.runs.directory import RunDir
from modplural.runs.plan import read_plan
from modplural.validation import is_number

PAGE = Path(__file__).with_name("view_page")  # the page's CSS, body and script


def _item_metrics(scores: dict, task: str, method: str, item_id: str, where: Path) -> dict | None:
    """One item's metrics from scores.json (None where it has none), or a one-line error for a file of the wrong shape."""
    per_method = scores.get(task, {})
    per_item = per_method.get(method, {}) if isinstance(per_method, dict) else None
    if not isinstance(per_item, dict):
        raise ModPluralError(f"{where}: {task} / {method}: expected an object of per-item metrics; run `modplural score` again")
    metrics = per_item.get(item_id)
    if metrics is not None and not (isinstance(metrics, dict) and all(is_number(v) and math.isfinite(v) for v in metrics.values())):
        raise ModPluralError(f"{where}: {task} / {method} / {item_id}: expected an object of finite numbers; run `modplural score` again")
    return metrics


def _item_score(task, metrics: dict | None, where: str) -> float | None:
    if not metrics:
        return None
    try:
        return task.item_score(metrics)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModPluralError(f"{where}: these metrics do not score ({type(exc).__name__}: {exc}); run `modplural score` again") from exc


def view_data(run_dir: Path, data_dir: Path) -> dict:
    """What the page shows: per task, each item with its gold and every method's stored answer and per-item metrics."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise ModPluralError(f"no such run directory: {run.path}")
    manifest = run.manifest()
    if "finished" not in manifest:
        raise ModPluralError(f"{run.path}: the run is unfinished (no 'finished' in manifest.json); run `modplural run` again to finish it")
    if not run.scores_path().is_file():
        raise ModPluralError(f"{run.path} has no scores.json (per-item metrics): run `modplural score {run.path}` first")
    scores = run.read_json(run.scores_path().name)
    plan = read_plan(run.path, data_dir)
    methods = list(plan.config.methods)
    tasks = {}
    for name, (task, _, items, _) in plan.tasks.items():
        for m in methods:
            if not run.predictions_path(name, m).is_file():
                raise ModPluralError(f"{run.predictions_path(name, m)} is missing: the run has no predictions of {m} on {name}; run `modplural run` again to finish it")
        results = {m: {r["id"]: r["result"] for r in run.read_predictions(name, m)} for m in methods}
        rows = []
        for item in items:
            answers = {}
            for method in methods:
                metrics = _item_metrics(scores, name, method, item.id, run.scores_path())
                answers[method] = {"result": results[method].get(item.id), "metrics": metrics, "score": _item_score(task, metrics, f"{run.scores_path()}: {name} / {method} / {item.id}")}
            query = item.query
            rows.append({"id": item.id, "question": query.text if query else None,
                         "context": [c for c in (query.attribute, query.persona) if c] if query else [],
                         "options": list(query.options) if query and query.options else None,
                         "gold": item.gold, "answers": answers})
        key, higher_is_better = task.primary
        tasks[name] = {"metric": key, "higher_is_better": higher_is_better, "items": rows}
    return {"name": plan.config.name, "protocol": manifest.get("protocol", {}).get("name"),
            "main_model": str(manifest.get("main_model")), "communities": list(manifest.get("communities", {})),
            "finished": manifest["finished"], "methods": methods, "tasks": tasks}


def render(data: dict) -> str:
    """The page: ``data`` as inline JSON (every ``<``, ``>`` and ``&`` escaped, so no text can close the script tag)."""
    try:
        blob = json.dumps(data, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # the page's JSON would not parse: refuse rather than show a blank page
        raise ModPluralError(f"the run holds a non-finite number ({exc}); run `modplural score` to find the damaged prediction") from exc
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(data["name"])} — modplural view</title>\n'
            f"<style>{_asset('view.css')}</style></head>\n<body>\n{_asset('body.html')}\n"
            f'<script type="application/json" id="data">{blob}</script>\n<script>{_asset("view.js")}</script>\n</body></html>\n')


def write_view(run_dir: Path, data_dir: Path, out: Path | None = None) -> Path:
    """Write the page for ``run_dir`` (default ``RUN_DIR/view.html``); returns its path."""
    try:
        data = view_data(run_dir, data_dir)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise ModPluralError(f"{run_dir}: manifest.json, scores.json or a predictions file is not what modplural writes ({type(exc).__name__}: {exc}); "
                             f"run `modplural score {run_dir}` again") from exc
    try:
        page = render(data)
    except ModPluralError as exc:
        raise ModPluralError(f"{run_dir}: {exc}") from exc
    out = Path(out) if out else Path(run_dir) / "view.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModPluralError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return write_atomic(out, page)


def _asset(name: str) -> str:
    """One of the page's parts (CSS, body, script), package data in ``runs/view_page/``."""
    return (PAGE / name).read_text(encoding="utf-8")
