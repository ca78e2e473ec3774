
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
