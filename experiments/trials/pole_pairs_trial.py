"""Do the intended pole pairs hold opposite views on a larger base? The 1.5B trial against SmolLM2-135M.

    modplural train --all --config-dir training/configs/qwen15b             # 4 adapters, ~11 min each on 2 CPU cores
    modplural communities eval --registry training/configs/qwen15b/_registry.yaml --max-blocks 8 --out experiments/results/pole_pairs/qwen15b
    modplural train --all --config-dir training/configs/smollm2_30steps     # the control: the same recipe on SmolLM2
    modplural communities eval --registry training/configs/smollm2_30steps/_registry.yaml --max-blocks 8 --out experiments/results/pole_pairs/smollm2_30steps
    python -m experiments.trials.pole_pairs_trial                                  # -> experiments/results/pole_pairs/report.md

Reads the stance reads that ``communities eval`` stored (``distinctness.json``) for three sets of the same four
communities (health news left/right, bioethics permissive/protective): the shipped SmolLM2 adapters (120 steps; their
nine-community file, restricted to these four), the control (SmolLM2, the trial's 30 steps) and the trial (the 1.5B,
30 steps). For each, and for both arms (adapters; the base model persona-prompted with each community's description):

* **distance**: the JS distance between the two members of each pole pair, against the four cross pairs (one member
  of each axis), paired over its axis's questions and, for both pairs together, over all 69 questions (bootstrap 95%
  intervals), as ``communities eval`` reports it;
* **direction**: how far each pole leans to its own end of its axis's questions relative to the other pole. Every
  bioethics question lists its most permissive option first and its most protective last; every political one its
  most left-leaning first and most right-leaning last, except ``malpractice_caps`` (caps, the right's position, first),
  which is read reversed. A question's lean is p(first) - p(last) of the voice's view; the pole gap is the lean of
  the left (permissive) pole minus the right (protective) one's, over its axis's questions, with a bootstrap 95%
  interval: positive means the poles are apart the intended way.
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations
from pathlib import Path

import numpy as np

from modplural.adapters.stance_questions import load_questions
from modplural.adapters.stances import ADAPTERS, ARMS, BASE, POLES, StanceResult, pair_js
from modplural.atomic_files import write_atomic
from modplural.errors import ModPluralError
from modplural.json_files import read_json
from modplural.metrics import paired_bootstrap

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "experiments" / "results" / "pole_pairs"
COMMUNITIES = (*POLES["political"], *POLES["bioethics"])
REVERSED = {"malpractice_caps"}  # political questions whose first option is the right-leaning end
SOURCES = {
    "SmolLM2-135M, shipped (120 steps)": REPO / "community_models" / "SmolLM2-135M-Instruct" / "distinctness.json",
    "SmolLM2-135M, control (30 steps)": RESULTS / "smollm2_30steps" / "distinctness.json",
    "Qwen2.5-Coder-1.5B, trial (30 steps)": RESULTS / "qwen15b" / "distinctness.json",
}


def stored_result(path: Path) -> StanceResult:
    """The stance reads of ``path`` (a ``distinctness.json``), for the base model and the four communities only."""
    stances = read_json(path).get("stances")
    if not isinstance(stances, dict):
        raise ModPluralError(f"{path} holds no stance reads (run communities eval with --stances)")
    questions = load_questions(None)
    if stances["settings"]["questions_sha256_16"] != questions.digest:
        raise ModPluralError(f"{path} was measured on other stance questions than the shipped file")
    keep = (BASE, *COMMUNITIES)
    reads = {arm: {v: stances["reads"][arm][v] for v in keep} for arm in ARMS}
    mass = {arm: {v: stances["label_mass"][arm][v] for v in keep} for arm in ARMS}
    return StanceResult(questions, COMMUNITIES, reads, mass)


def lean(view: list[float], question_id: str) -> float:
    """p(first option) - p(last) of a view, with the left/permissive end first."""
    sign = -1.0 if question_id in REVERSED else 1.0
    return sign * (view[0] - view[-1])


def measure(result: StanceResult) -> dict:
    """Per arm: each pole pair's distance on its axis and on all questions, poles vs cross pairs, and each pole gap."""
    qs = result.questions.questions
    out: dict = {}
    for arm in ARMS:
        views = result.distributions(arm)
        cross = [(a, b) for a, b in combinations(COMMUNITIES, 2) if (a, b) not in POLES.values()]
        poles_js = np.mean([pair_js(views, a, b) for a, b in POLES.values()], axis=0)
        cross_js = np.mean([pair_js(views, a, b) for a, b in cross], axis=0)
        arm_out: dict = {"poles_vs_cross": paired_bootstrap(poles_js.tolist(), cross_js.tolist()), "pairs": {}}
        for axis, (a, b) in POLES.items():
            idx = [i for i, q in enumerate(qs) if q.axis == axis]
            js = pair_js(views, a, b)
            gaps_a = [lean(views[a][i], qs[i].id) for i in idx]
            gaps_b = [lean(views[b][i], qs[i].id) for i in idx]
            arm_out["pairs"][axis] = {"pair": [a, b], "questions": len(idx), "js_axis": float(np.mean([js[i] for i in idx])),
                                      "js_all": float(np.mean(js)), "cross_js_axis": float(np.mean([cross_js[i] for i in idx])),
                                      "axis_vs_cross": paired_bootstrap([float(js[i]) for i in idx], [float(cross_js[i]) for i in idx]),
                                      "gap": paired_bootstrap(gaps_a, gaps_b)}
        arm_out["label_mass"] = {n: float(np.mean(result.mass[arm][n])) for n in COMMUNITIES}
        out[arm] = arm_out
    return out


def held_out(path: Path) -> dict[str, list[float]]:
    """Per community: (own adapter's perplexity, the base model's) on its validation text, from ``path``'s perplexity
    table (the blocks ``communities eval`` scored; its settings say how many)."""
    table = read_json(path).get("perplexity")
    if not isinstance(table, dict) or not all(isinstance(table.get(n), dict) for n in (BASE, *COMMUNITIES)):
        raise ModPluralError(f"{path} holds no perplexity table for {', '.join(COMMUNITIES)}")
    return {name: [float(table[name][name]), float(table[BASE][name])] for name in COMMUNITIES}


def interval(effect: dict) -> str:
    low, high = effect["ci95"]
    star = " *" if low > 0 or high < 0 else ""
    return f"{effect['difference']:+.3f} [{low:+.3f}, {high:+.3f}]{star}"


def report(measured: dict[str, dict], perplexity: dict[str, dict]) -> str:
    lines = ["# The pole pairs on a larger base: Qwen2.5-Coder-1.5B against SmolLM2-135M", "",
             "Written by `python -m experiments.trials.pole_pairs_trial` (its docstring has the commands and the definitions). Stance questions: "
             "`modplural/adapters/stance_questions.yaml` (69 questions, every rotation of the options). `*`: the 95% interval excludes zero.", ""]
    for arm in ARMS:
        what = "adapters" if arm == ADAPTERS else "personas (the base model with each community's description as its system prompt)"
        lines += [f"## {what.capitalize()}", "",
                  "| set | JS left vs right, political questions | JS permissive vs protective, bioethics questions | cross pairs, same questions | pole minus cross pairs, its axis: political / bioethics | poles minus cross pairs, all questions | gap left minus right | gap permissive minus protective |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, m in measured.items():
            p, b = m[arm]["pairs"]["political"], m[arm]["pairs"]["bioethics"]
            lines.append(f"| {label} | {p['js_axis']:.3f} | {b['js_axis']:.3f} | {p['cross_js_axis']:.3f} / {b['cross_js_axis']:.3f} | "
                         f"{interval(p['axis_vs_cross'])} / {interval(b['axis_vs_cross'])} | {interval(m[arm]['poles_vs_cross'])} | {interval(p['gap'])} | {interval(b['gap'])} |")
        lines.append("")
    lines += ["## Letter mass and held-out perplexity", "",
              "Perplexity on the community's own validation blocks, as `communities eval` scored them (each set's `distinctness.md` names the blocks).", "",
              "| set | community | letter mass (adapter) | perplexity: own adapter (base model) |", "|---|---|---|---|"]
    for label, m in measured.items():
        for name in COMMUNITIES:
            own, base = perplexity[label][name]
            lines.append(f"| {label} | {name} | {m[ADAPTERS]['label_mass'][name]:.2f} | {own:.2f} ({base:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS / "report.md"))
    args = parser.parse_args(argv)
    try:
        measured = {label: measure(stored_result(path)) for label, path in SOURCES.items()}
        perplexity = {label: held_out(path) for label, path in SOURCES.items()}
        text = report(measured, perplexity)
        write_atomic(Path(args.out), text)
        write_atomic(Path(args.out).with_suffix(".json"), json.dumps(measured, indent=1) + "\n")
    except ModPluralError as exc:
        parser.exit(2, f"pole_pairs_trial: error: {exc}\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
