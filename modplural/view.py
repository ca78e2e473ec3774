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
from modplural.run_dir import RunDir
from modplural.runner import Experiment
from modplural.validation import is_number


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
    experiment = Experiment.from_run_dir(run.path, data_dir)
    methods = list(experiment.config.methods)
    tasks = {}
    for name, (task, _, items, _) in experiment.tasks.items():
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
    return {"name": experiment.config.name, "protocol": manifest.get("protocol", {}).get("name"),
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
            f"<style>{_CSS}</style></head>\n<body>\n{_BODY}\n"
            f'<script type="application/json" id="data">{blob}</script>\n<script>{_JS}</script>\n</body></html>\n')


def write_view(run_dir: Path, data_dir: Path, out: Path | None = None) -> Path:
    """Write the page for ``run_dir`` (default ``RUN_DIR/view.html``); returns its path."""
    try:
        data = view_data(run_dir, data_dir)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise ModPluralError(f"{run_dir}: manifest.json, scores.json or a predictions file is not what modplural writes ({type(exc).__name__}: {exc}); "
                             f"run `modplural score {run_dir}` again") from exc
    page = render(data)
    out = Path(out) if out else Path(run_dir) / "view.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModPluralError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return write_atomic(out, page)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5rem 3rem;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:.5rem 0;z-index:1}
h1{font-size:1.3rem;margin:.3rem 0}h2{font-size:1rem;margin:0 0 .3rem}h3{font-size:.95rem;margin:0 0 .3rem}
#controls{display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
#controls fieldset{border:0;padding:0;margin:0;display:inline}
.about,.summary,.context,.metrics,.note{color:#555;font-size:.9em}
.item{border:1px solid #ddd;border-radius:6px;padding:.7rem;margin:1rem 0}
.question{white-space:pre-wrap;font-weight:600}
.diff{font-size:.9em;background:#f4f4f4;display:inline-block;padding:.1rem .4rem;border-radius:4px}
.answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:.7rem;margin-top:.5rem}
.answer{background:#fafafa;border:1px solid #e4e4e4;border-radius:6px;padding:.5rem}
.text{white-space:pre-wrap;margin:.3rem 0;font-family:inherit}
.metrics b{color:#000}
table.bars{border-collapse:collapse;font-size:.85em;margin:.2rem 0}
table.bars td{padding:0 .3rem}
td.track{width:8rem}td.track span{display:block;height:.7rem;background:#4c72b0}
td.num{font-variant-numeric:tabular-nums;text-align:right}
dt{font-weight:600;margin-top:.3rem}dd{margin:0 0 0 .8rem}
"""

_BODY = """<header>
<h1 id="title"></h1><p class="about" id="about"></p>
<form id="controls" onsubmit="return false">
<label>Task <select id="task"></select></label>
<fieldset id="methods"><legend>Methods</legend></fieldset>
<label>Sort <select id="sort"></select></label>
</form>
<p class="summary" id="summary"></p>
</header>
<main id="items"></main>"""

_JS = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

// Build elements from text only: strings become text nodes, never markup.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}
const fmt = (x) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(3)) : String(x));

function bars(labels, values) {
  const table = el("table", {class: "bars"});
  values.forEach((v, i) => {
    const fill = el("span");
    fill.style.width = Math.max(0, Math.min(1, v)) * 100 + "%";
    table.append(el("tr", {}, el("td", {}, labels[i] ?? String(i + 1)), el("td", {class: "track"}, fill), el("td", {class: "num"}, fmt(v))));
  });
  return table;
}
const namedBars = (obj) => bars(Object.keys(obj), Object.values(obj));
const isNumbers = (v) => Array.isArray(v) && v.every((x) => typeof x === "number");

// ------------------------------------------------------------------ state <-> location.hash
function readState() {
  const params = new URLSearchParams(location.hash.slice(1));
  const tasks = Object.keys(DATA.tasks);
  const task = tasks.includes(params.get("task")) ? params.get("task") : tasks[0];
  const methods = params.has("methods") ? params.get("methods").split(",").filter((m) => DATA.methods.includes(m)) : DATA.methods.slice();
  const pair = (params.get("sort") || "").split("-");
  const sort = pair.length === 2 && pair[0] !== pair[1] && pair.every((m) => DATA.methods.includes(m)) ? pair : null;
  return {task, methods, sort};
}

function writeState() {
  const methods = DATA.methods.filter((m) => $("m-" + m).checked);
  let hash = "task=" + encodeURIComponent($("task").value) + "&methods=" + methods.map(encodeURIComponent).join(",");
  if ($("sort").value) hash += "&sort=" + encodeURIComponent($("sort").value);
  location.hash = hash;  // the hashchange listener redraws
}

function setControls(state) {
  $("task").value = state.task;
  for (const m of DATA.methods) $("m-" + m).checked = state.methods.includes(m);
  $("sort").value = state.sort ? state.sort.join("-") : "";
}

// ------------------------------------------------------------------ drawing
function drawGold(gold, options) {
  const box = el("div", {class: "gold"}, el("h3", {}, "Gold"));
  for (const [key, value] of Object.entries(gold)) {
    if (isNumbers(value) && options && value.length === options.length) box.append(el("div", {class: "note"}, key), bars(options, value));
    else if (Array.isArray(value)) box.append(el("div", {class: "note"}, key), el("ul", {}, ...value.map((v) => el("li", {}, fmt(v)))));
    else box.append(el("p", {}, key + ": " + fmt(value)));
  }
  return box;
}

function drawAnswer(method, answer, task, options) {
  const box = el("div", {class: "answer", "data-method": method}, el("h3", {}, method));
  const r = answer.result;
  if (answer.metrics) {
    const others = Object.entries(answer.metrics).filter(([k]) => k !== task.metric).map(([k, v]) => k + " " + fmt(v));
    box.append(el("p", {class: "metrics"}, el("b", {}, task.metric + " " + fmt(answer.score)), others.length ? " · " + others.join(" · ") : ""));
  }
  if (!r) {
    box.append(el("p", {class: "note"}, "no prediction"));
    return box;
  }
  if (r.fixed) box.append(el("p", {class: "note"}, "one-option item: answered without asking the model"));
  if (r.response) box.append(el("pre", {class: "text response"}, r.response));
  if (r.selection_text) box.append(el("p", {class: "note"}, "selection answer: " + r.selection_text));
  if (r.distribution) box.append(el("div", {class: "note"}, "distribution"), bars(r.options || options || [], r.distribution));
  if (r.chosen_community) box.append(el("p", {}, "chosen community: ", el("b", {}, r.chosen_community)));
  if (r.selection_scores) box.append(el("div", {class: "note"}, "selection scores"), namedBars(r.selection_scores));
  if (r.weights) box.append(el("div", {class: "note"}, "weights"), namedBars(r.weights));
  const messages = Object.entries(r.community_messages || {});
  if (messages.length) {
    const list = el("dl");
    for (const [name, text] of messages) {
      list.append(el("dt", {}, name), el("dd", {}, el("pre", {class: "text message"}, text)));
      const dist = r.community_distributions && r.community_distributions[name];
      if (dist) list.append(el("dd", {}, bars(r.options || options || [], dist)));
    }
    box.append(el("details", {}, el("summary", {}, "community messages (" + messages.length + ")"), list));
  }
  return box;
}

// A's per-item metric minus B's, or null where either has none.
function difference(item, [a, b]) {
  const sa = item.answers[a].score, sb = item.answers[b].score;
  return typeof sa === "number" && typeof sb === "number" ? sa - sb : null;
}

function draw() {
  const state = readState();
  setControls(state);
  const task = DATA.tasks[state.task];
  let items = task.items.slice();
  if (state.sort) {
    const sign = task.higher_is_better ? 1 : -1;  // how much A beats B, largest first; items without scores last
    const key = (item) => { const d = difference(item, state.sort); return d === null ? -Infinity : d * sign; };
    items.sort((x, y) => (key(y) - key(x)) || 0);
  }
  const direction = task.higher_is_better ? "higher" : "lower";
  $("summary").textContent = items.length + " items of " + state.task + "; per-item " + task.metric + " (" + direction + " is better)" +
    (state.sort ? "; sorted by how much " + state.sort[0] + " beats " + state.sort[1] + ", largest first" : "");
  const main = $("items");
  main.replaceChildren();
  for (const item of items) {
    const section = el("section", {class: "item", "data-item": item.id}, el("h2", {}, "Item " + item.id));
    section.append(el("p", {class: "question"}, item.question ?? "(no question: a one-option item)"));
    for (const c of item.context) section.append(el("p", {class: "context"}, c));
    if (item.options) section.append(el("ol", {class: "options", type: "A"}, ...item.options.map((o) => el("li", {}, o))));
    section.append(drawGold(item.gold, item.options));
    if (state.sort) {
      const d = difference(item, state.sort);
      const text = d === null ? "n/a" : (d >= 0 ? "+" : "") + d.toFixed(3);
      section.append(el("p", {class: "diff"}, task.metric + ": " + state.sort.join(" − ") + " = " + text));
    }
    section.append(el("div", {class: "answers"}, ...state.methods.map((m) => drawAnswer(m, item.answers[m], task, item.options))));
    main.append(section);
  }
}

// ------------------------------------------------------------------ start
$("title").textContent = DATA.name;
$("about").textContent = "protocol " + DATA.protocol + " · main LLM " + DATA.main_model + " · communities: " +
  (DATA.communities.join(", ") || "none") + " · finished " + DATA.finished;
for (const t of Object.keys(DATA.tasks)) $("task").append(el("option", {value: t}, t));
for (const m of DATA.methods) $("methods").append(el("label", {}, el("input", {type: "checkbox", id: "m-" + m}), " " + m));
$("sort").append(el("option", {value: ""}, "item order"));
for (const a of DATA.methods) for (const b of DATA.methods) if (a !== b) $("sort").append(el("option", {value: a + "-" + b}, a + " − " + b));
$("controls").addEventListener("change", writeState);
window.addEventListener("hashchange", draw);
draw();
"""
