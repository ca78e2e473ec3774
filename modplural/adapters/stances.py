"""Stance distinctness: do the communities hold different views, and more so than prompts can make them?

Every voice answers every contested question (``stance_questions.yaml``) directly, read as an exact distribution
over its lettered options (``option_probs`` after ``Answer:``). Two arms of voices:

* ``adapters``: each community as the pool runs it, its adapter (with its persona as the system turn, if any);
* ``personas``: the base model with a system prompt made from each community's registry description.

Both arms share the base model with no system prompt of ours (``base``). A small model prefers some letters
whatever they stand for, so each question is asked once per cyclic rotation of its options (every option once in
every position); a voice's view is the mean over rotations, in the file's option order. The reads of single
rotations are kept: how far they spread shows how much of one read is letter preference rather than view.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
from tqdm import tqdm

from modplural.backends.base import Backend, OptionRequest
from modplural.communities import Community
from modplural.errors import ModPluralError
from modplural.metrics import js_distance, paired_bootstrap
from modplural.prompts import option_labels
from modplural.prompts.modplural import ANSWER_PREFIX
from modplural.adapters.distinctness import BASE
from modplural.adapters.stance_questions import QuestionSet, StanceQuestion

ADAPTERS, PERSONAS = "adapters", "personas"
ARMS = (ADAPTERS, PERSONAS)
# Registry communities meant to disagree, by the question axis that probes their disagreement.
POLES = {"political": ("health_news_left", "health_news_right"), "bioethics": ("bioethics_permissive", "bioethics_protective")}

Distributions = dict[str, list[list[float]]]  # voice -> per question, a distribution over its options (file order)


@dataclass(frozen=True)
class Voice:
    """Who answers: a row of one arm's matrix (``base`` or a community), with its adapter and system prompt."""

    arm: str
    name: str
    adapter: str | None = None
    system: str | None = None


@dataclass(frozen=True)
class StanceResult:
    """Per arm, voice and question: the read of every rotation (in the file's option order) and the mean probability
    mass that fell on the option letters. The base model's reads appear in both arms."""

    questions: QuestionSet
    communities: tuple[str, ...]
    reads: dict[str, dict[str, list[list[list[float]]]]]  # arm -> voice -> question -> rotation -> distribution
    mass: dict[str, dict[str, list[float]]]

    def distributions(self, arm: str, rotation: int | None = None) -> Distributions:
        """Per voice and question: the mean over rotations (``rotation=None``: the view) or one rotation's read (0: file order)."""
        pick = (lambda r: np.mean(r, axis=0).tolist()) if rotation is None else (lambda r: list(r[rotation]))
        return {voice: [pick(r) for r in per_question] for voice, per_question in self.reads[arm].items()}


def voices(communities: Sequence[Community]) -> list[Voice]:
    """The base model (once, shared by both arms), then each community's adapter voice and persona voice."""
    out = [Voice(ADAPTERS, BASE)]
    for c in communities:
        if c.adapter is None:
            raise ModPluralError(f"community {c.name!r} has no adapter: the stance arms compare adapters with personas")
        out += [Voice(ADAPTERS, c.name, c.name, c.persona), Voice(PERSONAS, c.name, None, c.description_persona)]
    return out


def rotations(n: int) -> list[tuple[int, ...]]:
    """Every cyclic order of ``n`` options: ``order[k][position]`` is the index of the option shown there."""
    return [tuple((k + i) % n for i in range(n)) for k in range(n)]


def _request(voice: Voice, question: StanceQuestion, order: tuple[int, ...]) -> OptionRequest:
    shown = StanceQuestion(question.id, question.axis, question.question, tuple(question.options[i] for i in order))
    system = ({"role": "system", "content": voice.system},) if voice.system else ()
    return OptionRequest(labels=option_labels(len(order)), messages=(*system, {"role": "user", "content": shown.prompt}),
                         adapter=voice.adapter, answer_prefix=ANSWER_PREFIX)


def measure_stances(backend: Backend, communities: Sequence[Community], questions: QuestionSet, progress: bool = True) -> StanceResult:
    """Every voice on every question in every rotation: one batched ``option_probs`` call per question."""
    if len(communities) < 2:
        raise ModPluralError("stance distinctness needs at least two communities")
    speakers = voices(communities)
    reads: dict[str, dict[str, list]] = {arm: {BASE: [], **{c.name: [] for c in communities}} for arm in ARMS}
    mass: dict[str, dict[str, list]] = {arm: {name: [] for name in names} for arm, names in reads.items()}
    for q in tqdm(questions.questions, desc="stance questions", disable=not progress):
        orders = rotations(len(q.options))
        results = backend.option_probs([_request(v, q, order) for v in speakers for order in orders])
        for j, voice in enumerate(speakers):
            rows = results[j * len(orders):(j + 1) * len(orders)]
            read = np.zeros((len(orders), len(q.options)))
            for k, (order, result) in enumerate(zip(orders, rows)):
                read[k, list(order)] = result.probs  # back to the file's option order
            for arm in ARMS if voice.name == BASE else (voice.arm,):
                reads[arm][voice.name].append(read.tolist())
                mass[arm][voice.name].append(float(np.mean([r.mass for r in rows])))
    return StanceResult(questions, tuple(c.name for c in communities), reads, mass)


def pair_js(dists: Distributions, a: str, b: str) -> list[float]:
    """Per question, the JS distance between voices ``a`` and ``b``."""
    return [js_distance(p, q) for p, q in zip(dists[a], dists[b])]


def js_matrix(dists: Distributions) -> dict[str, dict[str, float]]:
    """``matrix[a][b]``: mean JS distance over the questions between voices ``a`` and ``b`` (symmetric, zero diagonal)."""
    names = list(dists)
    matrix = {a: {a: 0.0} for a in names}
    for a, b in combinations(names, 2):
        matrix[a][b] = matrix[b][a] = float(np.mean(pair_js(dists, a, b)))
    return {a: {b: matrix[a][b] for b in names} for a in names}


def _per_question(dists: Distributions, pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Per question, the mean JS distance over ``pairs`` of voices."""
    return np.mean([pair_js(dists, a, b) for a, b in pairs], axis=0).tolist()


def _mean(values) -> float:
    return float(np.mean(values))


def summarise(result: StanceResult) -> dict:
    """The numbers the report states: adapters vs personas, the intended poles vs other pairs, per community."""
    names = list(result.communities)
    pairs = list(combinations(names, 2))
    views = {arm: result.distributions(arm) for arm in ARMS}
    single = {arm: result.distributions(arm, rotation=0) for arm in ARMS}
    spread = {arm: _per_question(views[arm], pairs) for arm in ARMS}
    to_base = {arm: _per_question(views[arm], [(BASE, n) for n in names]) for arm in ARMS}
    arms_and_base = {BASE: [(ADAPTERS, BASE)], ADAPTERS: [(ADAPTERS, n) for n in names], PERSONAS: [(PERSONAS, n) for n in names]}
    summary: dict = {
        "questions": len(result.questions.questions),
        "mean_pairwise_js": {arm: _mean(spread[arm]) for arm in ARMS},
        "adapters_minus_personas": paired_bootstrap(spread[ADAPTERS], spread[PERSONAS]),
        "mean_js_to_base": {arm: _mean(to_base[arm]) for arm in ARMS},
        "adapters_minus_personas_to_base": paired_bootstrap(to_base[ADAPTERS], to_base[PERSONAS]),
        "file_order_pairwise_js": {arm: _mean(_per_question(single[arm], pairs)) for arm in ARMS},
        "rotation_js": {key: _mean([_rotation_js(result.reads[arm][v]) for arm, v in voices_]) for key, voices_ in arms_and_base.items()},
        "js_from_uniform": {key: _mean([_from_uniform(views[arm][v]) for arm, v in voices_]) for key, voices_ in arms_and_base.items()},
        "label_mass": {key: _mean([result.mass[arm][v] for arm, v in voices_]) for key, voices_ in arms_and_base.items()},
        "by_axis": _by_axis(result, spread),
        "communities": {n: _community(result, views, n) for n in names},
    }
    poles = {axis: pair for axis, pair in POLES.items() if set(pair) <= set(names)}
    if poles:
        summary["poles"] = _poles(result, views, poles, [p for p in pairs if p not in poles.values()])
    return summary


def _by_axis(result: StanceResult, spread: dict[str, list[float]]) -> dict[str, dict]:
    """Per question axis: its number of questions and each arm's mean JS between communities on them."""
    axes = [q.axis for q in result.questions.questions]
    return {axis: {"questions": axes.count(axis), **{arm: _mean([v for v, x in zip(spread[arm], axes) if x == axis]) for arm in ARMS}}
            for axis in dict.fromkeys(axes)}


def _rotation_js(per_question: list[list[list[float]]]) -> float:
    """Mean over questions of the mean JS distance between one voice's reads under different rotations."""
    return _mean([np.mean([js_distance(a, b) for a, b in combinations(reads, 2)]) for reads in per_question])


def _from_uniform(per_question: list[list[float]]) -> float:
    """Mean JS distance of a voice's views from the uniform distribution: how decided it is at all."""
    return _mean([js_distance(p, [1 / len(p)] * len(p)) for p in per_question])


def _community(result: StanceResult, views: dict[str, Distributions], name: str) -> dict[str, float]:
    return {"adapter_vs_base": _mean(pair_js(views[ADAPTERS], BASE, name)), "persona_vs_base": _mean(pair_js(views[PERSONAS], BASE, name)),
            "adapter_vs_persona": _mean([js_distance(p, q) for p, q in zip(views[ADAPTERS][name], views[PERSONAS][name])]),
            "adapter_label_mass": _mean(result.mass[ADAPTERS][name]), "persona_label_mass": _mean(result.mass[PERSONAS][name])}


def _poles(result: StanceResult, views: dict[str, Distributions], poles: dict[str, tuple[str, str]], others: list[tuple[str, str]]) -> dict:
    """Intended opposite poles: on their own axis's questions vs the rest, and all poles vs every other community pair."""
    axes = [q.axis for q in result.questions.questions]
    out: dict = {"pairs": {}, "poles_vs_other_pairs": {}}
    for axis, (a, b) in poles.items():
        out["pairs"][f"{a} vs {b}"] = {"axis": axis, **{arm: _split(pair_js(views[arm], a, b), [x == axis for x in axes]) for arm in ARMS}}
    for arm in ARMS:
        pole_js = _per_question(views[arm], list(poles.values()))
        other_js = _per_question(views[arm], others) if others else None
        out["poles_vs_other_pairs"][arm] = {"poles": _mean(pole_js), "other_pairs": _mean(other_js) if other_js else None,
                                            "difference": paired_bootstrap(pole_js, other_js) if other_js else None}
    return out


def _split(values: list[float], on_axis: list[bool]) -> dict:
    """Mean of ``values`` over all questions, over those of the axis, and over the others (None where there are none)."""
    inside = [v for v, x in zip(values, on_axis) if x]
    outside = [v for v, x in zip(values, on_axis) if not x]
    return {"all": _mean(values), "axis_questions": _mean(inside) if inside else None, "other_questions": _mean(outside) if outside else None}
