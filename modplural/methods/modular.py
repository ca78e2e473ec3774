"""Modular Pluralism: community LMs write messages, the main LLM collaborates with them in three modes.

``Collaboration`` holds the three modes over any source of messages (``_panels``): ``ModularPluralism`` takes them
from its community pool, ``Ethos`` (``methods/ethos.py``) from perspectives the main LLM generates per query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from modplural.backends.base import Backend
from modplural.errors import ModPluralError
from modplural.learned_weights import LearnedWeights, fit_weights, mixture
from modplural.methods.base import Method, Selection
from modplural.pool import CommunityPool
from modplural.prompts import option_labels
from modplural.protocol import Protocol
from modplural.types import Mode, PluralResult, Query

POINTWISE_LABELS = ("Yes", "No")


@dataclass(frozen=True)
class Panel:
    """One query's voices: the pool that wrote them (names and weights), each one's message, and what led to them."""

    pool: CommunityPool
    messages: dict[str, str]  # in the pool's order
    perspectives: list[dict[str, Any]] | None = None  # recorded in the result (ethos)
    prompts: list[str] = field(default_factory=list)  # main-LLM prompts sent before the messages (ethos: the perspective list)


class Collaboration(Method):
    """The main LLM collaborating with the voices of a panel per query.

    * Overton: every voice comments on the query; the main LLM writes one response grounded on all of the
      comments, instructed to reflect diverse values and perspectives.
    * Steerable: every voice responds; the main LLM picks the message that best reflects the attribute (``selection``
      listwise: one numbered list, read as ``selection_reading`` says; pointwise: each message judged alone, the
      highest probability of Yes wins), then answers grounded on the chosen message.
    * Distributional: each voice's message conditions the main LLM's distribution over the options; the
      per-voice distributions are averaged with the panel pool's weights (uniform by default, as in the original;
      ``weights: learned``: fitted weights and temperature, see ``ModularPluralism.fit_weights``).
    """

    learned: LearnedWeights | None = None  # weights: learned, given by with_weights (fitted by fit_weights)

    def _panels(self, queries: list[Query], mode: Mode) -> list[Panel]:
        raise NotImplementedError

    def fit_priors(self, mode: str, queries: Sequence[Query]) -> dict[str, list[float]]:
        """As ``Method.fit_priors``; under ``selection: pointwise`` without selection priors (its scores are each
        message's P(Yes), read uncalibrated)."""
        priors = super().fit_priors(mode, queries)
        if self.protocol.selection == "pointwise":
            return {key: prior for key, prior in priors.items() if not key.startswith("selection:")}
        return priors

    def _result(self, mode: Mode, q: Query, panel: Panel, **fields) -> PluralResult:
        prompts = [*panel.prompts, *fields.pop("main_prompts", [])]
        return PluralResult(mode, self.name, q.text, community_messages=panel.messages, perspectives=panel.perspectives, main_prompts=prompts, **fields)

    def _overton(self, queries: list[Query]) -> list[PluralResult]:
        panels = self._panels(queries, "overton")
        results = [self._result("overton", q, p) for q, p in zip(queries, panels)]
        prompts, neutral = self._prompts(self.prompts.overton, queries, [list(p.messages.values()) for p in panels])
        self._answer("overton", prompts, queries, results, neutral)
        return results

    def _steerable(self, queries: list[Query]) -> list[PluralResult]:
        panels = self._panels(queries, "steerable")
        if self.protocol.selection == "pointwise":
            picks, prompts_per_query = self._pointwise(queries, panels)
        else:
            selection_prompts, neutral = self._prompts(self.prompts.selection, queries, [list(p.messages.values()) for p in panels])
            picks = self._select(selection_prompts, [len(p.messages) for p in panels], self.protocol.selection_tokens, neutral)
            prompts_per_query = [[prompt] for prompt, _ in selection_prompts]
        results = []
        for q, p, pick, selection in zip(queries, panels, picks, prompts_per_query):
            results.append(self._result("steerable", q, p, main_prompts=selection))
            pick.fill(results[-1], list(p.messages))
        chosen = [r.community_messages[r.chosen_community] for r in results]
        prompts, neutral = self._prompts(self.prompts.grounded, queries, chosen)
        self._answer("steerable", prompts, queries, results, neutral)
        return results

    def _pointwise(self, queries: list[Query], panels: list[Panel]) -> tuple[list[Selection], list[list[str]]]:
        """Pointwise selection: every message judged on its own for the query's attribute; per query the pick (the
        highest probability of Yes, scores = each message's probability of Yes) and its prompts."""
        jobs = [(i, text) for i, p in enumerate(panels) for text in p.messages.values()]
        prompts = [self.prompts.selection_pointwise(queries[i], text) for i, text in jobs]
        answers = self._read(prompts, [POINTWISE_LABELS] * len(jobs), self.prompts.ANSWER_PREFIX)  # not calibrated: see the switch
        picks, asked = [], []
        for i in range(len(panels)):
            mine = [j for j, (k, _) in enumerate(jobs) if k == i]
            scores = [answers[j][0][0] for j in mine]
            mass = sum(answers[j][1] for j in mine) / len(mine)
            picks.append(Selection(max(range(len(scores)), key=scores.__getitem__), scores, mass))
            asked.append([prompts[j] for j in mine])
        return picks, asked

    def _distributional(self, queries: list[Query]) -> list[PluralResult]:
        panels = self._panels(queries, "distributional")
        jobs = [(i, name) for i, p in enumerate(panels) for name in p.messages]
        answer_prompts, neutral = self._prompts(self.prompts.grounded, [queries[i] for i, _ in jobs], [panels[i].messages[name] for i, name in jobs])
        labels = [option_labels(len(queries[i].options)) for i, _ in jobs]
        answers = self._choose(answer_prompts, labels, self.prompts.ANSWER_PREFIX, neutral)
        results = []
        for i, (q, p) in enumerate(zip(queries, panels)):
            names, (weights, temperature) = p.pool.names, self._weights(p.pool, q)
            mine = {name: answers[j] for j, (k, name) in enumerate(jobs) if k == i}
            per = {name: reading.probs for name, (reading, _) in mine.items()}
            result = self._result(
                "distributional", q, p, options=list(q.options), distribution=mixture(weights, [per[n] for n in names], temperature),
                option_mass=sum(w * mine[n][1] for w, n in zip(weights, names)), community_distributions=per, weights=dict(zip(names, weights)),
                main_prompts=[prompt for prompt, (k, _) in zip(answer_prompts, jobs) if k == i],
                temperature=temperature if self.protocol.weights == "learned" and q.weights is None else None,
            )
            first = mine[names[0]][0]
            if first.raw is not None:  # calibrated: every voice's prompt has the same content-free form, so one prior
                result.raw_distribution, result.prior = mixture(weights, [mine[n][0].raw for n in names], temperature), first.prior
            results.append(result)
        return results

    def _weights(self, pool: CommunityPool, q: Query) -> tuple[list[float], float]:
        """The weights and temperature of one query's mixture: the query's own weights if it gives any, else under
        ``weights: learned`` the fitted ones, else the pool's (uniform unless the registry gives weights)."""
        if q.weights is not None or self.protocol.weights == "uniform":
            return pool.resolve_weights(q.weights), 1.0
        if self.learned is None:
            raise ModPluralError("weights learned needs weights fitted on calibration items: method.with_weights(method.fit_weights(queries, targets, "
                                 "items)) on items outside the evaluated ones (modplural run does, with the config's calibration_items), or use weights uniform")
        return [self.learned.weights[n] for n in pool.names], self.learned.temperature


class ModularPluralism(Collaboration):
    """The main LLM plus a community pool: every community of the pool is a voice on every query."""

    name = "modular"

    def __init__(self, main: Backend, pool: CommunityPool, protocol: Protocol | str | Mapping | None = None, seed: int = 0) -> None:
        super().__init__(main, protocol, seed)
        self.pool = pool

    def _panels(self, queries: list[Query], mode: Mode) -> list[Panel]:
        messages = self._community_messages(self.pool, [self.prompts.community(q, mode) for q in queries])
        return [Panel(self.pool, m) for m in messages]

    def fit_weights(self, queries: Sequence[Query], targets: Sequence[Sequence[float]], items: Sequence[str]) -> LearnedWeights:
        """``weights: learned``: run distributional with uniform weights on ``queries`` (calibration items outside the
        evaluated ones, ids ``items``), fit each community's weight and a temperature to their gold ``targets`` and
        return them; ``with_weights`` gives them to a method. This method is left as it was."""
        results = self.under(weights="uniform").run("distributional", list(queries))
        per_item = [[r.community_distributions[n] for n in self.pool.names] for r in results]
        return fit_weights(self.pool.names, per_item, targets, items)

    def with_weights(self, learned: LearnedWeights) -> "ModularPluralism":
        """A copy of this method that mixes its communities with ``learned`` (weights learned)."""
        return self._copy(learned=learned)
