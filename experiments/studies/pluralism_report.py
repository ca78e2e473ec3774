"""Every method and extension on the same VITAL dev items (issue 14 part 5): experiments/results/pluralism/report.md.

A *variant* is one method of one finished run, under a label. Per task: the headline metrics of each variant with
bootstrap 95% intervals, and paired bootstrap effects over the same items against ``modular`` and against the
task's best baseline (vanilla, prompting or moe, whichever has the best primary mean); per variant, on how many
tasks it is significantly better than every baseline; which communities the steerable selection picks; and the
learned community weights of runs made with ``weights: learned`` (their ``weights.json``).

    python -m experiments.studies.pluralism_report [--variant LABEL=RUNDIR:METHOD ...] [--data-dir DIR] [--out experiments/results/pluralism]

Without ``--variant`` the planned runs are compared (a variant whose run directory is missing is listed as not run).
A label may name several runs holding different tasks (``modplural run CONFIG --tasks ...``). Run directories do
not outlive a sitting on a small machine, so each finished run is exported without its text and committed:

    python -m experiments.studies.pluralism_report --export runs/NAME experiments/results/pluralism/runs/NAME

and an exported directory is read as a run (its item_notes.json stands for the predictions).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


from modplural.runs.comparison import Effect, cell, effect, headline
from modplural.data_paths import data_dir as default_data_dir
from modplural.atomic_files import own_directory
from modplural.errors import ModPluralError
from modplural.learned_weights import TEMPERATURE_RANGE, check_learned
from modplural.metrics import Estimate, bootstrap
from modplural.protocol import Protocol
from modplural.references import PRIOR, reference_scores
from modplural.runs.directory import RunDir
from modplural.runs.plan import RunPlan, read_plan
from modplural.tasks import get_task, load_task

DEFAULT_VARIANTS = (
    "vanilla=runs/pluralism:vanilla",
    "prompting=runs/pluralism:prompting",
    "moe=runs/pluralism:moe",
    "modular=runs/pluralism:modular",
    "ethos=runs/pluralism_ethos:ethos",
    "ethos (released)=runs/pluralism_ethos_released:ethos",
    "modular (personas)=runs/pluralism_personas:modular",
    "modular+extensions=runs/pluralism_extensions:modular",
    "vanilla+content_free=runs/pluralism_content_free:vanilla",
    "prompting+content_free=runs/pluralism_content_free:prompting",
    "moe+content_free=runs/pluralism_content_free:moe",
    "modular+content_free=runs/pluralism_content_free:modular",
)
BASELINES = ("vanilla", "prompting", "moe")
REFERENCE = "modular"
GENERATED = "(generated perspective)"
NOTES = "item_notes.json"  # an exported run's per-item labels and flags (item_notes)
EXPORTED = ("manifest.json", "metrics.json", "scores.json", "weights.json")  # what --export copies of a run, besides the notes
WANTED_ITEMS = 40  # issue 14: at least this many items per task



@dataclass(frozen=True)
class Variant:
    label: str
    run_dir: Path
    method: str


@dataclass
class Loaded:
    """A variant whose runs exist: per task the experiment that ran it (protocol, manifest) and its per-item records. A
    variant may come from several runs, each holding other tasks (a long study split into runs that each finish in
    one sitting: ``modplural run CONFIG --tasks ...``)."""

    variant: Variant
    runs: dict[str, RunPlan]  # task -> the run that ran it
    scores: dict[str, dict[str, dict]]  # task -> item id -> per-item metrics

    def experiments(self) -> list[RunPlan]:
        """The variant's runs, each once, in task order."""
        return list({id(e): e for e in self.runs.values()}.values())


def parse_variant(text: str) -> Variant:
    """``LABEL=RUNDIR:METHOD`` -> Variant; a one-line error otherwise."""
    label, eq, rest = text.partition("=")
    run_dir, colon, method = rest.rpartition(":")
    if not (eq and colon and label.strip() and run_dir.strip() and method.strip()):
        raise ModPluralError(f"--variant needs LABEL=RUNDIR:METHOD (e.g. modular=runs/calibration_none:modular), got {text!r}")
    return Variant(label.strip(), Path(run_dir.strip()), method.strip())


def parse_variants(texts: list[str]) -> list[Variant]:
    """Variants in the order given; a label given twice must name another run each time (its runs hold other tasks)."""
    variants = [parse_variant(t) for t in texts]
    pairs = [(v.label, v.run_dir) for v in variants]
    repeated = sorted({label for label, run_dir in pairs if pairs.count((label, run_dir)) > 1})
    if repeated:
        raise ModPluralError(f"--variant {', '.join(repeated)} names the same run more than once")
    return variants


def method_scores(variant: Variant, scores: dict) -> dict[str, dict[str, dict]]:
    """task -> item id -> per-item metrics of the variant's method, from its run's scores.json."""
    out = {task: per_method[variant.method] for task, per_method in scores.items() if isinstance(per_method, dict) and variant.method in per_method}
    if not out:
        held = sorted({m for per_method in scores.values() if isinstance(per_method, dict) for m in per_method})
        raise ModPluralError(f"{variant.run_dir / 'scores.json'} has no method {variant.method!r} (it has: {', '.join(held) or 'none'}); fix --variant {variant.label}")
    return out


def load(variants: list[Variant], data: Path) -> dict[str, Loaded]:
    """label -> Loaded, for the variants whose run directory exists (each run read once); a label's runs must hold
    different tasks."""
    runs: dict[Path, tuple[RunPlan, dict]] = {}
    out: dict[str, Loaded] = {}
    for variant in variants:
        if not variant.run_dir.is_dir():
            continue
        key = variant.run_dir.resolve()
        if key not in runs:
            scores = RunDir(variant.run_dir).read_json("scores.json")  # first: a run without scores is the error to name
            runs[key] = (read_plan(variant.run_dir, data), scores)
        experiment, scores = runs[key]
        found = method_scores(variant, scores)
        loaded = out.setdefault(variant.label, Loaded(variant, {}, {}))
        for task, records in found.items():
            if task in loaded.runs:
                raise ModPluralError(f"variant {variant.label}: {task} is in both {loaded.runs[task].directory.path} and {variant.run_dir}; give each task one run")
            loaded.runs[task], loaded.scores[task] = experiment, records
    return out


def shared_items(scores: dict[str, dict[str, dict]]) -> dict[str, list[str]]:
    """task -> the item ids of every variant that ran it; a one-line error where two variants' ids differ."""
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for label, per_task in scores.items():
        for task, records in per_task.items():
            if task not in out:
                out[task], owner[task] = list(records), label
            elif set(records) != set(out[task]):
                only = sorted(set(records) ^ set(out[task]))[0]
                raise ModPluralError(f"{task}: variants {owner[task]} and {label} scored different items ({len(out[task])} vs {len(records)} ids; "
                                     f"e.g. {only!r} only in {label if only in records else owner[task]}); the paired comparison needs the same items in every run")
    return out


def best_baseline(means: dict[str, float], higher_is_better: bool) -> str | None:
    """The baseline label with the best primary mean (the first of BASELINES on a tie); None where no baseline ran."""
    present = [b for b in BASELINES if b in means]
    if not present:
        return None
    return max(present, key=lambda b: means[b] if higher_is_better else -means[b])


def significantly_better(change: Effect | None, higher_is_better: bool) -> bool:
    """Whether the paired interval excludes 0 on the good side."""
    if change is None:
        return False
    _, low, high, _ = change
    return low > 0 if higher_is_better else high < 0


def beats_every_baseline(label: str, against: dict[str, Effect], higher_is_better: bool) -> bool:
    """Significantly better than each baseline that ran (the variant itself left out); False with none to beat."""
    others = [b for b in BASELINES if b != label]
    return any(b in against for b in others) and all(significantly_better(against.get(b), higher_is_better) for b in others if b in against)


def direction(task: str) -> tuple[str, bool]:
    """The task's headline metric and whether higher is better (its primary direction)."""
    task_obj, _ = get_task(task)
    return task_obj.headline, task_obj.primary[1]


def estimates(task: str, records: list[dict], protocol: Protocol) -> dict[str, Estimate]:
    """Headline metric -> value with a percentile bootstrap 95% interval over the items."""
    return {metric: bootstrap(records, lambda rs, m=metric: headline(task, list(rs), protocol)[m]) for metric in headline(task, records, protocol)}


def item_notes(run: RunDir, task: str, method: str) -> dict[str, dict]:
    """item id -> what the report reads of a prediction besides its scores: ``chosen`` (the steerable selection's
    label, ``chosen_label``) and ``refusal`` (Overton, ``is_refusal``). From the predictions, or, for a run exported
    without them (``--export``), from its ``item_notes.json``."""
    if run.predictions_path(task, method).is_file():
        return {r["id"]: notes_of(task, r["result"]) for r in run.read_predictions(task, method)}
    if not (run.path / NOTES).is_file():
        raise ModPluralError(f"{run.path} has neither predictions nor {NOTES} for {task} / {method}")
    notes = run.read_json(NOTES).get(task, {}).get(method)
    if not isinstance(notes, dict) or not all(isinstance(n, dict) for n in notes.values()):
        raise ModPluralError(f"{run.path / NOTES}: no notes for {task} / {method}")
    return notes


def notes_of(task: str, result: dict) -> dict:
    """The notes of one prediction (labels and flags only: never model text, which may quote the item)."""
    notes = {}
    if result.get("chosen_community"):
        notes["chosen"] = chosen_label(result)
    if task == "vital_overton":
        notes["refusal"] = is_refusal(result.get("response"))
    perspectives = result.get("perspectives")
    if perspectives:  # ethos: how its list came out (count, asks, registry fill-ins)
        notes["perspectives"] = len(perspectives)
        notes["attempts"] = max(int(p.get("attempts") or 1) for p in perspectives)
        notes["registry"] = sum(p.get("source") == "registry" for p in perspectives)
    return notes


def perspective_counts(items: dict[str, list[str]], loaded: dict[str, Loaded]) -> dict[str, dict]:
    """label -> task -> how its generated perspective lists came out over the task's items: items by number of
    perspectives kept, by asks needed (``ethos: released`` re-asks up to three times), and registry fill-ins."""
    out: dict[str, dict] = {}
    for label, run in loaded.items():
        for task, ids in items.items():
            if task not in run.scores:
                continue
            notes = item_notes(run.runs[task].directory, task, run.variant.method)
            lists = [notes[i] for i in ids if "perspectives" in notes.get(i, {})]
            if lists:
                out.setdefault(label, {})[task] = {
                    "perspectives": dict(sorted(Counter(n["perspectives"] for n in lists).items())),
                    "attempts": dict(sorted(Counter(n["attempts"] for n in lists).items())),
                    "registry_fill_ins": sum(n["registry"] for n in lists), "items": len(lists)}
    return out


def length_check(items: dict[str, list[str]], loaded: dict[str, Loaded]) -> dict[str, dict]:
    """label -> Overton sentences per response, the within-variant correlation of sentences and coverage, and the
    coverage at the same response length: an analysis of covariance with one common slope of coverage on
    ln(sentences), estimated within variants, each variant's mean coverage moved along it to the mean length of all.
    Descriptive: how much of a coverage difference response length accounts for (the proxy scores each value by its
    best sentence, so more sentences are more chances)."""
    import numpy as np

    task = "vital_overton"
    ids = items.get(task, [])
    per = {label: (np.log(np.maximum([run.scores[task][i]["sentences"] for i in ids], 1)), np.asarray([run.scores[task][i]["coverage"] for i in ids], float))
           for label, run in loaded.items() if task in run.scores}
    if len(per) < 2 or not ids:
        return {}
    within = sum(float(((x - x.mean()) ** 2).sum()) for x, _ in per.values())
    slope = sum(float(((x - x.mean()) * (y - y.mean())).sum()) for x, y in per.values()) / within if within else 0.0
    grand = float(np.mean([x.mean() for x, _ in per.values()]))
    out = {}
    for label, (x, y) in per.items():
        corr = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
        out[label] = {"sentences": float(np.exp(x).mean()), "correlation": corr, "coverage": float(y.mean()),
                      "coverage_at_mean_length": float(y.mean() - slope * (x.mean() - grand))}
    return {"slope": slope, "mean_log_sentences": grand, "variants": out}


def length_lines(check: dict) -> list[str]:
    if not check:
        return []
    lines = ["", "## Overton coverage and response length", "",
             f"Descriptive (an analysis of covariance): coverage rises {check['slope']:.3f} per unit of ln(sentences) within variants; "
             f"*at mean length* moves each variant's mean coverage along that slope to the same length ({math.exp(check['mean_log_sentences']):.1f} "
             "sentences, geometric mean): what is left of a difference once response length is accounted for.", "",
             "| variant | sentences per response | corr(ln sentences, coverage) | coverage | at mean length |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {v['sentences']:.2f} | {v['correlation']:+.2f} | {v['coverage']:.3f} | {v['coverage_at_mean_length']:.3f} |"
              for label, v in check["variants"].items()]
    return lines


def perspective_lines(counts: dict[str, dict]) -> list[str]:
    if not counts:
        return []
    lines = ["", "## Generated perspectives (ethos)", "", "Per item: how many perspectives the main LLM's list gave (kept: at most 9), how many "
             "asks it took (`ethos: released` asks again while fewer than six parse, three asks at most; the best list is kept), and "
             "registry communities filled in (only below two).", "",
             "| variant | task | items | perspectives kept: items | asks: items | registry fill-ins |", "|---|---|---|---|---|---|"]
    for label, per_task in counts.items():
        for task, c in per_task.items():
            kept = ", ".join(f"{k}: {v}" for k, v in c["perspectives"].items())
            asks = ", ".join(f"{k}: {v}" for k, v in c["attempts"].items())
            lines.append(f"| {label} | {task} | {c['items']} | {kept} | {asks} | {c['registry_fill_ins']} |")
    return lines


def selection_counts(loaded: Loaded, task: str, ids: list[str]) -> Counter:
    """How often each community is the steerable selection's choice over ``ids``. A perspective the main LLM
    generated for the item (ethos) counts as ``(generated perspective)``: its name is model output about the item,
    which may quote the item's text, so it is never written into a report."""
    notes = item_notes(loaded.runs[task].directory, task, loaded.variant.method)
    return Counter(notes[i]["chosen"] for i in ids if "chosen" in notes.get(i, {}))


def chosen_label(result: dict) -> str:
    """The chosen community's name, or ``(generated perspective)`` for a perspective that is not a registry one."""
    sources = {p.get("name"): p.get("source") for p in result.get("perspectives") or []}
    return GENERATED if sources.get(result["chosen_community"], "registry") != "registry" else result["chosen_community"]


REFUSAL = re.compile(r"^\W*(i'?m sorry|i am sorry|sorry\b)|\b(can(?:no|')t|am unable to|am not able to|won't) "
                     r"(?:provide|assist|help|comment|support|answer|engage|offer|give|discuss)\b", re.I)


def is_refusal(response: str | None) -> bool:
    """Whether an Overton response declines to answer: it opens with an apology ("I'm sorry, but I can't assist with
    that.") or says, within its first 200 characters, that it cannot provide / assist / comment / ... ("As an AI
    language model, I cannot provide any comments on political issues.")."""
    return bool(response) and bool(REFUSAL.search(response.strip()[:200]))


def refusal_counts(items: dict[str, list[str]], loaded: dict[str, Loaded]) -> dict[str, dict]:
    """label -> {"refusals": n, "answers": n} over the Overton items, for the variants that ran Overton."""
    task = "vital_overton"
    wanted = set(items.get(task, []))
    out = {}
    for label, run in loaded.items():
        if task in run.scores:
            notes = item_notes(run.runs[task].directory, task, run.variant.method)
            flags = [bool(notes[i].get("refusal")) for i in wanted if i in notes]
            out[label] = {"refusals": sum(flags), "answers": len(flags)}
    return out


def refusal_lines(counts: dict[str, dict]) -> list[str]:
    if not counts:
        return []
    return ["", "## Overton refusals", "", "Responses that decline to answer (`is_refusal`: an opening apology, or \"cannot provide / assist / comment ...\" "
            "within the first 200 characters).", "",
            "| variant | refusals | answers | rate |", "|---|---|---|---|",
            *[f"| {label} | {c['refusals']} | {c['answers']} | {c['refusals'] / c['answers']:.3f} |" for label, c in counts.items() if c["answers"]]]


def learned_weights(run: RunDir, method: str) -> dict[str, dict]:
    """task -> ``method``'s entry of the run's weights.json ({} for a run without learned weights)."""
    if not run.weights_path.is_file():
        return {}
    names = list(run.manifest().get("communities") or {})
    out = {}
    for task, per_method in run.read_json(run.weights_path.name).items():
        entry = per_method.get(method) if isinstance(per_method, dict) else None
        if entry is not None:
            out[task] = check_learned(entry, names, f"{run.weights_path}: {task} / {method}").as_dict()
    return out


def weight_rows(entries: dict[str, dict], items: dict[str, list[str]]) -> list[str]:
    """Table rows of one variant's learned weights: temperature, calibration JS, fit items (and how many are also evaluated), weights."""
    rows = []
    for task, entry in entries.items():
        overlap = len({str(i) for i in entry["items"]} & set(items.get(task, [])))
        weights = ", ".join(f"{name} {w:.3f}" for name, w in sorted(entry["weights"].items(), key=lambda kv: -kv[1]))
        js = entry["calibration_js"]
        rows.append(f"| {task} | {entry['temperature']:.3g}{' (the upper bound)' if entry['temperature'] >= TEMPERATURE_RANGE[1] - 1e-6 else ''} | {js['uniform']:.3f} → {js['learned']:.3f} | "
                    f"{len(entry['items'])} ({overlap}) | {weights} |")
    return rows


def task_section(task: str, ids: list[str], loaded: dict[str, Loaded]) -> dict:
    """The numbers of one task: per variant its estimates, and its paired effects against modular and each baseline;
    the references that need no model (``modplural/references.py``) likewise, without a verdict."""
    metric, higher = direction(task)
    holders = {label: run for label, run in loaded.items() if task in run.scores}
    records = {label: [run.scores[task][i] for i in ids] for label, run in holders.items()}
    values = {label: estimates(task, records[label], run.runs[task].protocol) for label, run in holders.items()}
    best = best_baseline({label: values[label][metric].value for label in holders if label in BASELINES}, higher)
    variants = {}
    for label, run in holders.items():
        against = {other: effect(task, holders[other].scores[task], holders[other].runs[task].protocol, run.scores[task], run.runs[task].protocol)
                   for other in (REFERENCE, *BASELINES) if other in holders and other != label}
        primary = {other: change[metric] for other, change in against.items() if metric in change}
        variants[label] = {"estimates": values[label], "against": against, "beats_every_baseline": beats_every_baseline(label, primary, higher)}
    return {"metric": metric, "higher_is_better": higher, "best_baseline": best, "items": len(ids), "variants": variants,
            "references": reference_rows(task, ids, holders)}


def reference_rows(task: str, ids: list[str], holders: dict[str, Loaded]) -> dict[str, dict]:
    """label -> estimates, paired effects against modular and each baseline, and (prior) how many items had a
    prior, for the no-model references on these items; {} for tasks whose gold is not a distribution."""
    run = next(iter(holders.values())).runs[task]
    task_obj, _, every_item, _ = load_task(task, run.data_dir, run.protocol)
    chosen = {i.id: i for i in every_item}
    items = [chosen[i] for i in ids if i in chosen]
    out = {}
    for label, reference in reference_scores(task_obj, items, every_item, run.protocol).items():
        scores = reference["scores"]
        against = {other: effect(task, holders[other].scores[task], holders[other].runs[task].protocol, scores, run.protocol)
                   for other in (REFERENCE, *BASELINES) if other in holders}
        out[label] = {"estimates": estimates(task, [scores[i] for i in ids], run.protocol), "against": against,
                      **({"prior_items": reference["prior_items"]} if "prior_items" in reference else {})}
    return out


def ran_dirs(loaded: dict[str, Loaded]) -> set[Path]:
    """The resolved run directories the loaded variants were read from."""
    return {e.directory.path.resolve() for run in loaded.values() for e in run.experiments()}


def run_lines(loaded: Loaded, items: dict[str, list[str]]) -> list[str]:
    """The rows of the what-was-run table: one per run of the variant."""
    lines = []
    for experiment in loaded.experiments():
        manifest = experiment.directory.manifest()
        protocol = manifest.get("protocol", {}).get("name") or experiment.directory.read_json("metrics.json").get("protocol")
        counts = ", ".join(f"{task} {len(items[task])}" for task, run in loaded.runs.items() if run is experiment)
        lines.append(f"| {loaded.variant.label} | `{experiment.directory.path}` | {loaded.variant.method} | `{protocol}` | `{manifest.get('main_model')}` | "
                     f"`{str(manifest.get('git_commit'))[:12]}` | {counts} | `{manifest.get('command')}` |")
    return lines


def scorer_identity(experiment: RunPlan) -> str:
    scorer = experiment.directory.read_json("metrics.json").get("scorer") or {}
    return f"`{scorer.get('identity', 'none')}`" + (" (a proxy)" if scorer.get("proxy") else "")


def header(variants: list[Variant], loaded: dict[str, Loaded], items: dict[str, list[str]], command: str | None = None) -> list[str]:
    experiments = [e for run in loaded.values() for e in run.experiments()]
    models = sorted({str(e.directory.manifest().get("main_model")) for e in experiments})
    bases = sorted({str(identity).split("+")[0] for e in experiments for identity in (e.directory.manifest().get("communities") or {}).values()})
    scorers = sorted({scorer_identity(e) for e in experiments})
    few = [f"{task} {len(ids)}" for task, ids in items.items() if len(ids) < WANTED_ITEMS]
    lines = [
        "# Pluralism: every method and extension on the same VITAL dev items", "",
        f"- These are our numbers for the main LLM {', '.join(f'`{m}`' for m in models)} with community LMs on {', '.join(f'`{b}`' for b in bases) or '(none)'} "
        "(adapters, or personas where a variant says so) on the VITAL development split (a seeded sample of each task), not the papers' models "
        "or test sets: compare variants here, never with published tables.",
        f"- Overton scorer: {', '.join(scorers)}; an embedding proxy is not the papers' NLI entailment, so Overton coverage compares variants only.",
        f"- Baselines: {', '.join(BASELINES)}; reference: `{REFERENCE}`. Values: the headline metric with a bootstrap 95% interval over items. "
        "Effects: the paired difference (variant − other) over the same items with a paired bootstrap 95% interval; `*`: the interval excludes 0. "
        "JS distance: lower is better, so a negative difference is an improvement. The best baseline of a task is the one with the best primary mean.",
        *([f"- This report: `{command}`"] if command else []),
        "", "## What was run", "",
        "| variant | run | method | protocol | main model | git commit | items per task | command |", "|---|---|---|---|---|---|---|---|",
        *[line for run in loaded.values() for line in run_lines(run, items)],
    ]
    ran = ran_dirs(loaded)
    lines += [f"| {v.label} | `{v.run_dir}` | {v.method} | (not run) | | | | |" for v in variants if v.run_dir.resolve() not in ran]
    lines += ["", "Items: every variant scored the same item ids per task (checked on scores.json): "
              + ", ".join(f"{task} {len(ids)}" for task, ids in items.items()) + "."]
    if few:
        lines.append(f"Fewer than the {WANTED_ITEMS} items per task issue 14 asks for: {', '.join(few)}.")
    return lines


def summary(tasks: dict[str, dict], loaded: dict[str, Loaded]) -> list[str]:
    lines = ["", "## Summary", "", "Tasks on which the variant is significantly better than every baseline on the primary metric "
             "(for a baseline: than the other baselines).", "", "| variant | tasks | which |", "|---|---|---|"]
    for label, run in loaded.items():
        ran = [task for task in tasks if label in tasks[task]["variants"]]
        won = [task for task in ran if tasks[task]["variants"][label]["beats_every_baseline"]]
        lines.append(f"| {label} | {len(won)} of {len(ran)} | {', '.join(won) or '—'} |")
    return lines


def task_lines(task: str, section: dict) -> list[str]:
    metric, best = section["metric"], section["best_baseline"]
    way = "higher" if section["higher_is_better"] else "lower"
    lines = ["", f"## {task}", "", f"Primary: {metric} ({way} is better); best baseline: {best or '(none ran)'}; {section['items']} items.", "",
             f"| variant | metric | value [95%] | vs {REFERENCE} | vs best baseline ({best or '—'}) | better than every baseline |", "|---|---|---|---|---|---|"]
    for label, numbers in section["variants"].items():
        for name, estimate in numbers["estimates"].items():
            versus = [cell(numbers["against"].get(other, {}).get(name)) if other != label else "(itself)" for other in (REFERENCE, best)]
            beats = ("yes" if numbers["beats_every_baseline"] else "no") if name == metric else ""
            lines.append(f"| {label} | {name} | {estimate.value:.3f} [{estimate.low:.3f}, {estimate.high:.3f}] | " + " | ".join(versus) + f" | {beats} |")
    for label, numbers in section["references"].items():
        for name, estimate in numbers["estimates"].items():
            versus = [cell(numbers["against"].get(other, {}).get(name)) for other in (REFERENCE, best)]
            lines.append(f"| {label} | {name} | {estimate.value:.3f} [{estimate.low:.3f}, {estimate.high:.3f}] | " + " | ".join(versus) + " | (reference) |")
    if section["references"]:
        prior = section["references"].get(PRIOR)
        lines += ["", "References need no model: the uniform distribution over each item's options; " + (
            f"the population prior, the mean gold distribution of the same question over the file's other groups (leave-one-out; "
            f"{prior['prior_items']} of {section['items']} items had one, the rest get the uniform distribution)." if prior else
            "no population prior (no question of this task is asked of several groups).") + " Argmax ties go to the first option, as the scorer reads them."]
    return lines


def selection_lines(items: dict[str, list[str]], loaded: dict[str, Loaded]) -> tuple[list[str], dict]:
    lines = ["", "## Steerable selection: which community is chosen", "",
             "Counts of `chosen_community` over the items (ethos: its perspectives); variants without a selection are left out.", ""]
    counts = {}
    for task in [t for t in items if get_task(t)[0].mode == "steerable"]:
        rows = {label: selection_counts(run, task, items[task]) for label, run in loaded.items() if task in run.scores}
        rows = {label: c for label, c in rows.items() if c}
        counts[task] = {label: dict(c.most_common()) for label, c in rows.items()}
        lines += [f"### {task}", "", "| variant | choices (most frequent first) | distinct |", "|---|---|---|"]
        lines += [f"| {label} | " + ", ".join(f"{name} {n}" for name, n in c.most_common()) + f" | {len(c)} |" for label, c in rows.items()]
        lines.append("")
    return lines, counts


def weight_lines(items: dict[str, list[str]], loaded: dict[str, Loaded]) -> tuple[list[str], dict]:
    learned = {label: entries for label, run in loaded.items()
               if (entries := {task: entry for e in run.experiments() for task, entry in learned_weights(e.directory, run.variant.method).items()})}
    lines = ["## Learned community weights", ""]
    if not learned:
        return lines + ["No variant was run with `weights: learned` (no weights.json in its run)."], {}
    for label, entries in learned.items():
        lines += [f"### {label}", "", "| task | temperature | calibration JS uniform → learned | fit items (also evaluated) | weights |", "|---|---|---|---|---|"]
        lines += weight_rows(entries, items) + [""]
    return lines, learned


def _effects(against: dict[str, dict]) -> dict:
    return {o: {k: {"difference": d, "ci95": [lo, hi], "n": n} for k, (d, lo, hi, n) in change.items()} for o, change in against.items()}


def as_json(tasks: dict[str, dict]) -> dict:
    """The task sections with estimates and effects as plain JSON values."""
    out = {}
    for task, section in tasks.items():
        variants = {label: {"estimates": {k: e.as_dict() for k, e in v["estimates"].items()}, "against": _effects(v["against"]),
                            "beats_every_baseline": v["beats_every_baseline"]} for label, v in section["variants"].items()}
        references = {label: {**r, "estimates": {k: e.as_dict() for k, e in r["estimates"].items()}, "against": _effects(r["against"])}
                      for label, r in section["references"].items()}
        out[task] = {**section, "variants": variants, "references": references}
    return out


def report(variants: list[Variant], data: Path, out: Path, command: str | None = None) -> Path:
    """Write report.md and report.json under ``out`` (``command``: the command line that made them, recorded in the
    report); returns the report path."""
    loaded = load(variants, data)
    if not loaded:
        raise ModPluralError("no variant has a run directory: " + ", ".join(str(v.run_dir) for v in variants))
    items = shared_items({label: run.scores for label, run in loaded.items()})
    tasks = {task: task_section(task, ids, loaded) for task, ids in items.items()}
    lines = header(variants, loaded, items, command) + summary(tasks, loaded)
    for task, section in tasks.items():
        lines += task_lines(task, section)
    chosen, counts = selection_lines(items, loaded)
    learned, weights = weight_lines(items, loaded)
    refusals = refusal_counts(items, loaded)
    perspectives = perspective_counts(items, loaded)
    lengths = length_check(items, loaded)
    lines += chosen + learned + refusal_lines(refusals) + length_lines(lengths) + perspective_lines(perspectives)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    ran = ran_dirs(loaded)
    runs = [{"label": v.label, "run_dir": str(v.run_dir), "method": v.method, "run": v.run_dir.resolve() in ran} for v in variants]
    payload = {"variants": runs, "items": items, "tasks": as_json(tasks), "selection": counts, "learned_weights": weights, "overton_refusals": refusals,
               "perspectives": perspectives, "overton_length": lengths}
    (out / "report.json").write_text(json.dumps(payload, indent=1) + "\n")
    return out / "report.md"


def export(run: Path, dest: Path) -> Path:
    """Copy what the report reads of a finished, scored run into ``dest`` without any text: its manifest, metrics,
    per-item scores (ids and numbers), learned weights, and per prediction the notes ``item_notes`` reads. ``dest``
    can be committed and read back as a run directory, so runs made in different sittings combine in one report."""
    source = RunDir(run)
    manifest = source.manifest()
    if not manifest.get("finished") or not (source.path / "scores.json").is_file():
        raise ModPluralError(f"{run} is not a finished, scored run (run it to the end, or `modplural score {run}`)")
    notes: dict[str, dict] = {}
    for path in sorted(source.predictions_dir.glob("*.jsonl")):
        task, _, method = path.stem.partition("__")
        notes.setdefault(task, {})[method] = {r["id"]: notes_of(task, r["result"]) for r in source.read_predictions(task, method)}
    own_directory(dest)
    target = RunDir(dest)
    for name in EXPORTED:
        if (source.path / name).is_file():
            target.write_json(name, source.read_json(name))
    target.write_json(NOTES, notes)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", metavar="LABEL=RUNDIR:METHOD", help="a method of a finished run, repeatable (default: the planned runs)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="experiments/results/pluralism")
    parser.add_argument("--export", nargs=2, metavar=("RUN_DIR", "DEST"), help="instead of a report: copy a finished run without its text into DEST (to commit)")
    args = parser.parse_args()
    try:
        if args.export:
            print(f"exported {args.export[0]} to {export(Path(args.export[0]), Path(args.export[1]))}")
            return
        command = shlex.join(["python", "-m", "experiments.studies.pluralism_report", *sys.argv[1:]])
        path = report(parse_variants(args.variant or list(DEFAULT_VARIANTS)), default_data_dir(args.data_dir), Path(args.out), command)
    except ModPluralError as exc:
        sys.exit(f"pluralism_report: error: {exc}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
