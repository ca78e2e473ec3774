"""What each protocol switch does to the numbers: experiments/results/fidelity/report.md.

Starting from a finished run under ``protocol: original`` (and one under ``modplural`` on the same items), each
generation switch is flipped alone to its modplural value in a new run of the tasks and methods it can affect
(community messages come from the message cache, so only the main LLM's work is redone), and each scoring switch
is flipped alone by re-scoring the original run's stored predictions. Effects are differences of each task's
headline metrics (flipped - original) with paired percentile-bootstrap 95% intervals over the same items.

    modplural run experiments/configs/vital_protocols.yaml --protocol original
    modplural run experiments/configs/vital_protocols.yaml --protocol modplural
    python -m experiments.studies.fidelity            # runs the ablations under runs/fidelity/, writes the report
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path


from modplural.data_paths import data_dir as default_data_dir
from modplural.protocol import MODPLURAL, SWITCHES
from modplural.runs.comparison import cell, compare
from modplural.runs.generation import Experiment
from modplural.runs.plan import RunPlan, read_plan
from modplural.runs.scoring import compute_metrics
from modplural.text import ends_a_sentence

ALL_METHODS = ("vanilla", "prompting", "moe", "modular")
OVERTON, VK, OQA = "vital_overton", "vital_steerable_vk", "vital_steerable_opinionqa"
MC, GOQA = "vital_distributional_moralchoice", "vital_distributional_globalopinionqa"
# generation switch -> (tasks, methods) it can change
ABLATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "answer_reading": ((OQA, MC, GOQA), ALL_METHODS),
    "selection_reading": ((VK, OQA), ("moe", "modular")),
    "steerable_answer": ((VK,), ALL_METHODS),
    "main_input": ((VK, OQA, MC, GOQA), ALL_METHODS),  # Overton too, with --overton
    "main_temperature": ((VK, OQA), ALL_METHODS),  # Overton too, with --overton
    "prompts": ((VK, OQA, MC, GOQA), ALL_METHODS),  # regenerates community messages: slow
}
OVERTON_TOO = {"main_input", "main_temperature"}
SCORING = [name for name, switch in SWITCHES.items() if switch.scoring]


def stored_scores(run: RunPlan, scorer) -> dict:
    """task -> method -> item id -> per-item metrics of the predictions a run holds (finished or not)."""
    out: dict = {}
    for task_name, (task, _, items, _) in run.tasks.items():
        for method in run.config.methods:
            results = {r["id"]: r["result"] for r in run.directory.read_predictions(task_name, method)}
            out.setdefault(task_name, {})[method] = {i.id: task.item_metrics(i, results[i.id], run.protocol, scorer) for i in items if i.id in results}
    return out


def repeats(text: str, n: int = 4) -> int:
    """How often the most frequent word n-gram of ``text`` occurs."""
    words = text.split()
    return max(Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1)).values(), default=0)


def readability(run: RunPlan) -> dict[str, tuple[int, int, int, int]]:
    """method -> (Overton answers with a word 4-gram said 3+ times, answers, community messages not ending a sentence, messages)."""
    out = {}
    for method in run.config.methods:
        results = [r["result"] for r in run.directory.read_predictions(OVERTON, method)]
        messages = [m for r in results for m in (r.get("community_messages") or {}).values()]
        looping = sum(repeats(r.get("response") or "") >= 3 for r in results)
        cut = sum(bool(m.strip()) and not ends_a_sentence(m) for m in messages)
        out[method] = (looping, len(results), cut, len(messages))
    return out


def table(effects: dict[str, dict[str, dict]]) -> list[str]:
    """Rows: task / metric; columns: methods."""
    lines = ["| task | metric | " + " | ".join(ALL_METHODS) + " | n |", "|---|---|" + "---|" * (len(ALL_METHODS) + 1)]
    for task, per_method in effects.items():
        metrics = sorted({m for e in per_method.values() for m in e})
        for metric in metrics:
            cells = [cell(per_method.get(method, {}).get(metric)) for method in ALL_METHODS]
            n = next((e[metric][3] for e in per_method.values() if metric in e), 0)
            lines.append(f"| {task} | {metric} | " + " | ".join(cells) + f" | {n} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", default="runs/vital_protocols_original")
    parser.add_argument("--modplural", default="runs/vital_protocols_modplural")
    parser.add_argument("--runs-dir", default="runs/fidelity")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--switches", default=",".join(ABLATIONS), help="generation switches to ablate (comma-separated)")
    parser.add_argument("--overton", action="store_true", help="also rerun Overton for main_input and main_temperature (long generations)")
    parser.add_argument("--no-generate", action="store_true", help="report on the ablation runs as they stand (items compared where both runs have them)")
    parser.add_argument("--readability", default="runs/readability", help="a run of experiments/configs/readability.yaml: the repetition and "
                        "message_trim switches, measured together against the --modplural run (skipped when missing)")
    parser.add_argument("--out", default="experiments/results/fidelity/report.md")
    args = parser.parse_args()
    data = default_data_dir(args.data_dir)

    base = read_plan(Path(args.original), data)
    from modplural.scorers import build_scorer

    scorer = build_scorer(base.config.scorer, base.config.nli_model)
    base_metrics, base_scores = compute_metrics(base, base.protocol, scorer)
    sections: list[tuple] = []  # (name, how measured, effects[, extra table rows])

    for name in SCORING:
        flipped = dataclasses.replace(base.protocol, **{name: getattr(MODPLURAL, name)})
        _, scores = compute_metrics(base, flipped, scorer)
        sections.append((name, "re-scored from the original run's predictions", {t: compare(t, base_scores[t], base.protocol, scores[t], flipped) for t in base_scores}))

    for name in [s for s in args.switches.split(",") if s]:
        tasks, methods = ABLATIONS[name]
        tasks = (OVERTON, *tasks) if args.overton and name in OVERTON_TOO else tasks
        protocol = {"base": base.config.protocol, name: getattr(MODPLURAL, name)}
        config = dataclasses.replace(base.config, name=f"fidelity_{name}", tasks=tasks, methods=methods, protocol=protocol)
        run = Experiment(config, data, Path(args.runs_dir) / name, command=f"python -m experiments.studies.fidelity --switches {name}")
        print(f"ablation {name}: protocol {run.protocol.name}", file=sys.stderr, flush=True)
        if not args.no_generate:
            run.run(progress=True)
        scores = stored_scores(run.plan, scorer)
        sections.append((name, f"a new run of {', '.join(tasks)} x {', '.join(methods)}", {t: compare(t, base_scores[t], base.protocol, scores[t], run.protocol) for t in tasks}))

    ours = read_plan(Path(args.modplural), data)
    _, ours_scores = compute_metrics(ours, ours.protocol, scorer)
    sections.insert(0, ("all switches (protocol modplural vs original)", "both full runs", {t: compare(t, base_scores[t], base.protocol, ours_scores[t], ours.protocol) for t in base_scores if t in ours_scores}))
    if Path(args.readability).is_dir():
        readable = read_plan(Path(args.readability), data)
        _, readable_scores = compute_metrics(readable, readable.protocol, scorer)
        how = (f"a new run of every task x method under `{readable.protocol.name}` with repetition {readable.protocol.repetition} and message_trim "
               f"{readable.protocol.message_trim} (`{args.readability}`), against `{args.modplural}` (both none); the cells are with − without")
        counts = {"without": readability(ours), "with": readability(readable)}
        rows = ["| method | Overton answers with a word 4-gram said 3+ times (without -> with) | community messages not ending a sentence (without -> with) |", "|---|---|---|"]
        rows += [f"| {m} | {counts['without'][m][0]}/{counts['without'][m][1]} -> {counts['with'][m][0]}/{counts['with'][m][1]} | "
                 f"{counts['without'][m][2]}/{counts['without'][m][3]} -> {counts['with'][m][2]}/{counts['with'][m][3]} |" for m in readable.config.methods if m in counts["without"]]
        sections.append(("repetition + message_trim", how, {t: compare(t, ours_scores[t], ours.protocol, readable_scores[t], readable.protocol) for t in ours_scores if t in readable_scores}, rows))
    write(Path(args.out), base, ours, sections, getattr(scorer, "identity", "none"))
    print(f"wrote {args.out}")
    return 0


def write(path: Path, base: RunPlan, ours: RunPlan, sections: list[tuple], scorer: str) -> None:
    manifest = base.directory.manifest()
    items = {t: len(i) for t, (_, _, i, _) in base.tasks.items()}
    lines = [
        "# Fidelity: what each protocol switch does to the numbers", "",
        f"Produced by `python -m experiments.studies.fidelity` on the 2-core reference CPU machine from `{base.directory.path}` "
        f"(`{manifest['command']}`) and `{ours.directory.path}`; git commit `{manifest.get('git_commit')}`.", "",
        f"- Model: `{manifest['main_model']}` as main LLM and base of the {len(manifest['communities'])} shipped communities (these are our numbers for a 135M model, never the papers').",
        f"- Data: VITAL development split, the same seeded sample in every run: {', '.join(f'{t} {n}' for t, n in items.items())} items.",
        f"- Base protocol: `{base.protocol.name}`; comparison protocol `{ours.protocol.name}` (run before the repetition and message_trim switches existed: "
        f"both none there; their effect has its own section). Both shorten community messages to "
        f"{base.protocol.message_tokens} and Overton responses to {base.protocol.main_tokens} new tokens (the protocols' 200) to fit the CPU budget.",
        f"- Overton scorer: `{scorer}` — an embedding **proxy**, so Overton coverage here is not comparable with the papers' NLI numbers.", "",
        "Each cell: the change of the metric when the switch is flipped alone from the original's value to modplural's "
        "(flipped − original), with a paired bootstrap 95% interval over the same items; `*` marks intervals that exclude 0. "
        "JS distance: lower is better. `—`: the switch cannot change that method there (not rerun).", "",
        "## Which numbers are comparable with the papers", "",
        "Only runs under `protocol: original` with `scorer: nli` (an MNLI model such as microsoft/deberta-v2-xlarge-mnli) for Overton "
        "reproduce the papers' protocol; with the same models and full test files they can be set beside the published tables. "
        "Runs under `modplural`, runs with any switch flipped, and Overton coverage from the `embedding` scorer are not comparable "
        "with published numbers; compare methods within one protocol instead.", "",
    ]
    for name, how, effects, *notes in sections:
        switches = [(n, SWITCHES[n]) for n in name.split(" + ") if n in SWITCHES]
        lines += [f"## {name}", ""]
        for switch_name, switch in switches:
            prefix = f"{switch_name}: " if len(switches) > 1 else ""
            lines += [f"- {prefix}original: {switch.original}", f"- {prefix}modplural: {switch.modplural}"]
        lines += [f"- measured by: {how}", ""]
        lines += table(effects) + [""]
        for note in notes:
            lines += [*note, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
