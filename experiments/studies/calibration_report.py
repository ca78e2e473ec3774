"""Raw vs calibrated option reading, every method on the same items: experiments/results/calibration/report.md.

Reads three finished runs of ``experiments/configs/calibration.yaml`` (``calibration: none``, ``content_free`` and
``split``; see the config for the commands) and writes, per task and method, the headline metrics of each reading
with paired bootstrap 95% intervals against ``none`` over the same items, and how the predictions spread over the
options (a method that answers one letter whatever the item gives one distinct answer).

    python -m experiments.studies.calibration_report [--runs runs] [--out experiments/results/calibration]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from modplural.atomic_files import own_directory, write_atomic
from modplural.data_paths import data_dir as default_data_dir
from modplural.errors import ModPluralError
from modplural.runs.comparison import cell, compare, headline
from modplural.prompts import option_labels
from modplural.runs.plan import RunPlan, read_plan

READINGS = ("none", "content_free", "split")
METHODS = ("vanilla", "prompting", "moe", "modular")


def argmax_letter(distribution: list[float]) -> str:
    return option_labels(len(distribution))[max(range(len(distribution)), key=distribution.__getitem__)]


def histogram(run: RunPlan, task: str, method: str, raw: bool = False) -> Counter:
    """How often each option letter is the prediction (the argmax), over the run's items of ``task``."""
    ids = {i.id for i in run.tasks[task][2] if i.fixed is None}
    results = [r["result"] for r in run.directory.read_predictions(task, method) if r["id"] in ids]
    key = "raw_distribution" if raw else "distribution"
    return Counter(argmax_letter(r[key] if r.get(key) is not None else r["distribution"]) for r in results if r.get("distribution"))


def shown(counts: Counter) -> str:
    return " ".join(f"{letter}:{n}" for letter, n in sorted(counts.items())) + f" ({len(counts)} distinct)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="the directory holding calibration_none, calibration_content_free, calibration_split")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="experiments/results/calibration")
    args = parser.parse_args()
    try:
        write(args)
    except ModPluralError as exc:
        sys.exit(f"calibration_report: error: {exc}")


def write(args: argparse.Namespace) -> None:
    """The report and the runs it read, kept without text, under ``args.out``."""
    data = default_data_dir(args.data_dir)
    runs = {name: read_plan(Path(args.runs) / f"calibration_{name}", data) for name in READINGS
            if name != "split" or (Path(args.runs) / "calibration_split").is_dir()}  # split is optional
    scores = {name: json.loads(run.directory.scores_path().read_text()) for name, run in runs.items()}
    raw = json.loads(runs["content_free"].directory.scores_path("raw").read_text())
    base = runs["none"]
    lines = [
        "# Calibrated option reading: raw vs calibrated, every method on the same items",
        "",
        f"- Runs: `{args.runs}/calibration_none`, `calibration_content_free` of `experiments/configs/calibration.yaml` and `calibration_split` of "
        "`calibration_split.yaml` (protocol modplural with the `calibration` switch flipped; everything else equal: items, seed, 64-token community "
        "messages, 128-token answers; the split run leaves Overton out: it has no option answer, and only MoE's selection would move).",
        f"- Model: {base.directory.manifest()['main_model']} (main LLM and the base of the nine shipped communities). "
        f"Items: {', '.join(f'{t} {len(i)}' for t, (_, _, i, _) in base.tasks.items())} (VITAL dev split, seeded sample; split calibration: "
        f"{base.config.calibration_items} other items per task, listed in the run's manifest and calibration.json). Overton scorer: embedding proxy.",
        "- Cells: the headline metric; under content_free and split, the paired difference from `none` over the same items with its "
        "bootstrap 95% interval (`*`: the interval excludes 0). `content_free raw` is the content_free run re-scored on its stored raw "
        "distributions (`metrics.raw.json`): for vanilla and prompting it must equal `none`, for MoE and modular steerable it differs "
        "because the calibrated selection picked other messages.",
        *([] if "split" in runs else ["- The split reading was not run for this report: its column reads `(not run)` (run `calibration_split.yaml`, then this script)."]),
        "",
    ]
    for task, (task_obj, _, _, _) in base.tasks.items():
        protocol = base.protocol
        lines += [f"## {task}", "", "| method | metric | none | content_free raw | content_free | split |", "|---|---|---|---|---|---|"]
        effects = {name: compare(task, scores["none"][task], protocol, scores[name][task], runs[name].protocol) if task in scores.get(name, {}) else {}
                   for name in ("content_free", "split")}
        for method in METHODS:
            if method not in scores["none"][task]:
                continue
            values = headline(task, list(scores["none"][task][method].values()), protocol)
            raw_values = headline(task, list(raw[task][method].values()), protocol) if task in raw else {}
            for metric, value in values.items():
                cells = [f"{value:.3f}", f"{raw_values[metric]:.3f}" if metric in raw_values else "(free text)"]
                cells += [cell(effects[name].get(method, {}).get(metric)) if task in scores.get(name, {}) else "(not run)" for name in ("content_free", "split")]
                lines.append(f"| {method} | {metric} | " + " | ".join(cells) + " |")
        if task_obj.mode != "overton":
            lines += ["", "Predictions (argmax letter) per method:", "", "| method | none | content_free raw | content_free | split |", "|---|---|---|---|---|"]
            for method in METHODS:
                if method in scores["none"][task]:
                    cells = [histogram(base, task, method), histogram(runs["content_free"], task, method, raw=True), histogram(runs["content_free"], task, method)]
                    split = shown(histogram(runs["split"], task, method)) if task in scores.get("split", {}) else "(not run)"
                    lines.append(f"| {method} | " + " | ".join(shown(c) for c in cells) + f" | {split} |")
        lines.append("")
    out = own_directory(Path(args.out))
    write_atomic(out / "report.md", "\n".join(lines) + "\n")
    for run in runs.values():  # kept without text: results/calibration/runs/<run>/
        kept = own_directory(out / "runs" / run.directory.path.name)
        for file in ("metrics.json", "metrics.raw.json", "calibration.json", "manifest.json"):
            if (run.directory.path / file).is_file():
                write_atomic(kept / file, (run.directory.path / file).read_bytes())
    print(f"wrote {out / 'report.md'}")


if __name__ == "__main__":
    main()
