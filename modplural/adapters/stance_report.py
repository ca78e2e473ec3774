"""Stance distinctness as a report: the Markdown section of ``distinctness.md``, the ``stances`` entry of
``distinctness.json`` and a heatmap PNG of both JS matrices."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from modplural.communities import DESCRIPTION_PERSONA
from modplural.adapters.distinctness import BASE
from modplural.adapters.stances import ADAPTERS, ARMS, PERSONAS, StanceResult, js_matrix

HEATMAP = "distinctness_stances.png"
JS_MAX = math.sqrt(math.log(2))  # the largest JS distance (natural log)
_ARM_TITLES = {ADAPTERS: "trained adapters", PERSONAS: "persona prompts"}


def stance_json(result: StanceResult, summary: dict) -> dict:
    """Everything measured: settings, both matrices, the summary, and every read (per arm, voice, question and
    rotation, in the file's option order; a voice's view is the mean of its reads) with its mass on the letters."""
    qs = result.questions
    return {
        "settings": {"questions_file": qs.path.name, "questions_version": qs.version, "questions_sha256_16": qs.digest,
                     "persona_prompt": DESCRIPTION_PERSONA, "answer": "exact option_probs after 'Answer:', once per cyclic rotation of the options"},
        "matrices": {arm: js_matrix(result.distributions(arm)) for arm in ARMS},
        "summary": summary,
        "questions": [{"id": q.id, "axis": q.axis, "options": len(q.options)} for q in qs.questions],
        "reads": {arm: {v: [[[round(p, 4) for p in read] for read in q] for q in per_q] for v, per_q in voices.items()} for arm, voices in result.reads.items()},
        "label_mass": {arm: {v: [round(m, 4) for m in per_q] for v, per_q in voices.items()} for arm, voices in result.mass.items()},
    }


def stance_markdown(result: StanceResult, summary: dict) -> list[str]:
    """The stance section: method, both matrices, the summary and a verdict drawn from the numbers."""
    qs = result.questions
    axes = ", ".join(f"{axis} {n}" for axis, n in Counter(q.axis for q in qs.questions).items())
    lines = ["", "## Stance distinctness: do the communities hold different views?", "",
             f"{len(qs.questions)} contested health questions written for this measurement (`{qs.path.name}` version {qs.version}, "
             f"sha256 {qs.digest}; by axis: {axes}), each with 2-5 options. Every voice answers each question directly: the question "
             "and its lettered options as the user turn, read as an exact distribution over the letters after `Answer:`. Each question "
             "is asked once per cyclic rotation of its options (every option once in every position); a voice's view is the mean of "
             f"those reads. Cells: mean Jensen-Shannon distance between views over the questions (natural log; 0 = same views, "
             f"{JS_MAX:.3f} = disjoint). `base`: the base model without a system prompt of ours. Heatmap of both matrices: `{HEATMAP}`."]
    for arm in ARMS:
        what = ("Each community's adapter (with its persona, if the registry gives one)." if arm == ADAPTERS else
                f"The base model with each community's registry description as the system prompt: \"{DESCRIPTION_PERSONA}\".")
        lines += ["", f"### JS distance between {_ARM_TITLES[arm]}", "", what, "", _table(js_matrix(result.distributions(arm)))]
    return lines + ["", "### Summary", "", *_summary_lines(summary), "", "### By question axis", "", *_axis_table(summary),
                    "", "### Per community", "", *_community_table(summary)]


def _table(matrix: dict[str, dict[str, float]]) -> str:
    names = list(matrix)
    rows = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    rows += [f"| {a} | " + " | ".join("–" if a == b else f"{matrix[a][b]:.3f}" for b in names) + " |" for a in names]
    return "\n".join(rows)


def _difference(test: dict) -> str:
    low, high = test["ci95"]
    p = "p < 0.001" if test["p_value"] < 0.001 else f"p = {test['p_value']:.3f}"
    return f"difference {test['difference']:+.3f}, 95% CI [{low:+.3f}, {high:+.3f}], paired bootstrap over questions {p}"


def _compare(test: dict) -> str:
    """More, less or not clearly more or less distinct: whether the 95% interval of the difference excludes zero."""
    low, high = test["ci95"]
    return "more distinct than" if low > 0 else "less distinct than" if high < 0 else "not clearly more or less distinct than"


def _by_arm(values: dict, digits: int = 3) -> str:
    return f"base {values[BASE]:.{digits}f}, adapters {values[ADAPTERS]:.{digits}f}, persona prompts {values[PERSONAS]:.{digits}f}"


def _on_axis(split: dict, axis: str) -> str:
    """A pair's JS on its axis's questions and on the others (all questions where one side has none)."""
    if split["axis_questions"] is None or split["other_questions"] is None:
        return f"{split['all']:.3f} on all questions"
    return f"{split['axis_questions']:.3f} on {axis} questions, {split['other_questions']:.3f} on the others"


def _summary_lines(s: dict) -> list[str]:
    spread, to_base, single = s["mean_pairwise_js"], s["mean_js_to_base"], s["file_order_pairwise_js"]
    lines = [
        f"- **Mean JS between communities: adapters {spread[ADAPTERS]:.3f} vs persona prompts {spread[PERSONAS]:.3f}** ({_difference(s['adapters_minus_personas'])}).",
        f"- Mean JS of each community from the base model: adapters {to_base[ADAPTERS]:.3f} vs persona prompts {to_base[PERSONAS]:.3f} "
        f"({_difference(s['adapters_minus_personas_to_base'])}).",
    ]
    poles = s.get("poles")
    if poles:
        for pair, row in poles["pairs"].items():
            lines.append(f"- Intended poles {pair}: " + "; ".join(f"{_ARM_TITLES[arm]} {_on_axis(row[arm], row['axis'])}" for arm in ARMS) + ".")
        for arm, row in poles["poles_vs_other_pairs"].items():
            if row["difference"] is not None:
                lines.append(f"- {_ARM_TITLES[arm].capitalize()}: intended poles {row['poles']:.3f} vs all other community pairs {row['other_pairs']:.3f} "
                             f"({_difference(row['difference'])}).")
    lines += [
        f"- How decided the views are (mean JS of a view from the uniform distribution): {_by_arm(s['js_from_uniform'])}.",
        f"- Letter preference: the same voice under different option orders (mean JS between its reads): {_by_arm(s['rotation_js'])}. "
        f"Read once, in the file's option order only, the communities would differ by adapters {single[ADAPTERS]:.3f} vs persona prompts {single[PERSONAS]:.3f}.",
        f"- Probability on the option letters before renormalising: {_by_arm(s['label_mass'], 2)}.",
        "",
        f"**Do trained adapters carry more distinct views than prompts do?** By this measure the adapters are {_compare(s['adapters_minus_personas'])} "
        f"persona prompts ({spread[ADAPTERS]:.3f} vs {spread[PERSONAS]:.3f} mean JS between communities). For scale: a voice's "
        f"reads move by {s['rotation_js'][ADAPTERS]:.3f} (adapters) when only the order of the options changes, and the views lie "
        f"{s['js_from_uniform'][ADAPTERS]:.3f} (adapters) and {s['js_from_uniform'][PERSONAS]:.3f} (persona prompts) from no preference at all.",
    ]
    return lines


def _axis_table(s: dict) -> list[str]:
    rows = ["Mean JS between communities on each axis's questions.", "", "| question axis | questions | adapters | persona prompts |", "|---|---|---|---|"]
    return rows + [f"| {axis} | {row['questions']} | {row[ADAPTERS]:.3f} | {row[PERSONAS]:.3f} |" for axis, row in s["by_axis"].items()]


def _community_table(s: dict) -> list[str]:
    rows = ["| community | adapter vs base | persona vs base | adapter vs persona | letter mass, adapter | letter mass, persona |", "|---|---|---|---|---|---|"]
    for name, c in s["communities"].items():
        rows.append(f"| {name} | {c['adapter_vs_base']:.3f} | {c['persona_vs_base']:.3f} | {c['adapter_vs_persona']:.3f} | "
                    f"{c['adapter_label_mass']:.2f} | {c['persona_label_mass']:.2f} |")
    return rows


def stance_heatmap(result: StanceResult, path: Path) -> None:
    """Both JS matrices side by side on one colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matrices = {arm: js_matrix(result.distributions(arm)) for arm in ARMS}
    names = list(matrices[ADAPTERS])
    values = {arm: np.array([[m[a][b] for b in names] for a in names]) for arm, m in matrices.items()}
    top = max(float(v.max()) for v in values.values()) or 1.0
    size = 0.6 * len(names) + 2
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size), layout="constrained")
    for ax, arm in zip(axes, ARMS):
        image = ax.imshow(values[arm], cmap="magma", vmin=0, vmax=top)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names if arm == ARMS[0] else [""] * len(names))
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{values[arm][i, j]:.3f}", ha="center", va="center", fontsize=6, color="white" if values[arm][i, j] < top / 2 else "black")
        ax.set_title(f"{_ARM_TITLES[arm]}: mean JS distance")
    fig.colorbar(image, ax=list(axes), label="mean Jensen-Shannon distance over questions", shrink=0.8)
    fig.suptitle(f"Stance distinctness on {len(result.questions.questions)} contested health questions")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
