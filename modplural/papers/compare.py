"""``modplural compare``: a finished run's metrics beside a paper's published numbers, one row per task, method and
metric definition, with the notes that say whether the two can be compared at all (protocol, Overton scorer, main
LLM, metric definitions). Reads files only."""

from __future__ import annotations

from modplural.errors import ModPluralError
from modplural.papers.definitions import DEFINITIONS, OVERTON, SHARE_KEY, rows_for
from modplural.papers.published import Paper
from modplural.papers.run_metrics import Estimate, RunMetrics
from modplural.protocol import ORIGINAL
from modplural.tasks import get_task

OVERTON_NOTE = ("Overton has two definitions: Modular Pluralism's score is the share of situations whose mean best-sentence entailment is above "
                "0.33 (evaluate_overton_valuekaleidoscope.py), which VITAL's coverage percentages most likely follow; modplural's headline is the "
                "mean coverage. Both rows are shown.")
MISSING = "not in run files"


def compare(run: RunMetrics, paper: Paper) -> str:
    """The side-by-side table and its notes; a run with none of the paper's tasks is a one-line error."""
    tasks = [t for t in run.tasks if t in paper.tasks]
    if not tasks:
        raise ModPluralError(f"{run.where} is a run of {', '.join(run.tasks)}; {paper.name}'s published numbers are on "
                             f"{', '.join(paper.tasks)}: compare it with the paper of its task set")
    llms = list(dict.fromkeys(p.number.main_llm for p in paper.numbers)) or ["published"]
    header = ["task", "method", "metric", "this run [95% CI]", "n", *llms]
    rows, estimates = [], []
    for task in tasks:
        for method in run.metrics["tasks"][task]:
            for name in rows_for(get_task(task)[0].name):
                estimate = run.estimate(task, method, DEFINITIONS[name].ours)
                estimates.append((name, estimate))
                published = {p.number.main_llm: p.value for p in paper.numbers if (p.number.task, p.number.method, p.number.metric) == (task, method, name)}
                rows.append([task, method, DEFINITIONS[name].label, _ours(estimate), str(estimate.n) if estimate else "",
                             *(f"{published[llm]:.3f}" if llm in published else "-" for llm in llms)])
    overton = any(get_task(t)[0].name == OVERTON for t in tasks)
    lines = [f"{paper.name} ({paper.citation})", f"published numbers: {paper.path}", f"run: {run.where}", "", *_table(header, rows), "", "Notes:"]
    lines += [f"- {note}" for note in _notes(run, paper, tasks, estimates, overton)]
    return "\n".join(lines)


def _ours(estimate: Estimate | None) -> str:
    if estimate is None:
        return MISSING
    low, high = estimate.ci95
    return f"{estimate.value:.3f} [{low:.3f}, {high:.3f}]" + ("*" if estimate.origin == "scores" else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, ["-" * w for w in widths], *rows]]


def _notes(run: RunMetrics, paper: Paper, tasks: list[str], estimates: list[tuple[str, Estimate | None]], overton: bool) -> list[str]:
    config, protocol = run.manifest["config"], run.manifest.get("protocol")
    notes = [_protocol_note(protocol)]
    if overton:
        notes += [OVERTON_NOTE, _scorer_note(run, paper)]
        if isinstance(protocol, dict) and protocol.get("empty_response", ORIGINAL.empty_response) != ORIGINAL.empty_response:
            notes.append(f"mean coverage counts a response without sentences as {protocol['empty_response']} here, {ORIGINAL.empty_response} "
                         "in the scripts; the share > 0.33 is the same either way")
    if any(e is not None and e.origin == "scores" for _, e in estimates):
        notes.append("* recomputed from the per-item coverage in the run's scores file (its metrics file predates the share)")
    if any(e is None and DEFINITIONS[name].ours == SHARE_KEY for name, e in estimates):
        notes.append("coverage share > 0.33: not computable from this run's files (its metrics file predates the share and no per-item "
                     "scores file is kept); `modplural score RUN_DIR` on the run directory writes it")
    notes.append(f"main LLM of this run: {run.manifest.get('main_model') or config.get('main_model')}" + _llm_match(config.get("main_model"), paper))
    left_out = [t for t in run.tasks if t not in tasks]
    if left_out:
        notes.append(f"not among {paper.name}'s tasks, left out: {', '.join(left_out)}")
    if not paper.numbers:
        notes.append(f"no published numbers are committed for {paper.name} ({paper.path.name}): {paper.not_read or 'none listed'}")
    return notes


def _protocol_note(protocol: object) -> str:
    """Whether the run followed the original scripts (a switch missing from an older manifest had the original's value)."""
    if not isinstance(protocol, dict):
        return "the run records no protocol (it predates them): it cannot be checked against the original scripts"
    differ = [f"{k} {protocol[k]!r}" for k, v in ORIGINAL.as_dict().items() if k != "name" and protocol.get(k, v) != v]
    if not differ:
        return "protocol original: the released scripts' steps, decoding and scoring definitions"
    return (f"protocol {protocol.get('name')} differs from the original scripts ({', '.join(differ)}): its numbers are not comparable with the "
            "published ones, whatever the metric definition")


def _scorer_note(run: RunMetrics, paper: Paper) -> str:
    scorer = run.metrics.get("scorer") or {}
    config = run.manifest["config"]
    name = scorer.get("name") or config.get("scorer")
    identity = scorer.get("identity") or (f"nli:{config.get('nli_model')}" if name == "nli" else name)
    if name == "nli" and identity == f"nli:{paper.nli_model}":
        return f"Overton scorer: {identity}, the NLI model {paper.name}'s numbers were scored with"
    if name == "nli":
        return f"Overton scorer: {identity}, not {paper.name}'s NLI model ({paper.nli_model}): its Overton numbers are not comparable with the published ones"
    return (f"Overton scorer: {identity}, an embedding-similarity proxy, not NLI entailment ({paper.nli_model}) as in {paper.name}: its Overton "
            "numbers are on another scale and not comparable with the published ones (0.33 is a threshold on entailment probability)")


def _llm_match(main_model: str | None, paper: Paper) -> str:
    if not paper.numbers:
        return ""
    same = sorted({p.number.main_llm for p in paper.numbers if main_model is not None and p.number.hub_id == main_model})
    if same:
        return f"; the published column {', '.join(same)} is the same model"
    return f"; the published columns are other main LLMs ({', '.join(dict.fromkeys(p.number.main_llm for p in paper.numbers))})"
