"""Modular Pluralism: community LMs write messages, the main LLM collaborates with them in three modes.

``Collaboration`` holds the three modes over any source of messages (``_panels``): ``ModularPluralism`` takes them
from its community pool, ``Ethos`` (``methods/ethos.py``) from perspectives the main LLM generates per query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from modplural.backends.base import Backend
from modplural.methods.base import Method
from modplural.pool import CommunityPool
from modplural.prompts import option_labels
from modplural.protocol import Protocol
from modplural.types import Mode, PluralResult, Query


@dataclass(frozen=True)
class Panel:
    """One query's voices: the pool that wrote them (names and weights), each one's message, and what led to them."""

    pool: CommunityPool
    messages: dict[str, str]  # in the pool's order
    perspectives: list[dict[str, str]] | None = None  # recorded in the result (ethos)
    prompts: list[str] = field(default_factory=list)  # main-LLM prompts sent before the messages (ethos: the perspective list)


class Collaboration(Method):
    """The main LLM collaborating with the voices of a panel per query.

    * Overton: every voice comments on the query; the main LLM writes one response grounded on all of the
      comments, instructed to reflect diverse values and perspectives.
    * Steerable: every voice responds; the main LLM picks the message that best reflects the attribute
      (``selection_reading``), then answers grounded on the chosen message.
    * Distributional: each voice's message conditions the main LLM's distribution over the options; the
      per-voice distributions are averaged with the panel pool's weights (uniform by default, as in the original).
    """

    def _panels(self, queries: list[Query], mode: Mode) -> list[Panel]:
        raise NotImplementedError

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
        selection_prompts, neutral = self._prompts(self.prompts.selection, queries, [list(p.messages.values()) for p in panels])
        picks = self._select(selection_prompts, [len(p.messages) for p in panels], self.protocol.selection_tokens, neutral)
        results = []
        for q, p, pick, (selection, _) in zip(queries, panels, picks, selection_prompts):
            results.append(self._result("steerable", q, p, main_prompts=[selection]))
            pick.fill(results[-1], list(p.messages))
        chosen = [r.community_messages[r.chosen_community] for r in results]
        prompts, neutral = self._prompts(self.prompts.grounded, queries, chosen)
        self._answer("steerable", prompts, queries, results, neutral)
        return results

    def _distributional(self, queries: list[Query]) -> list[PluralResult]:
        panels = self._panels(queries, "distributional")
        jobs = [(i, name) for i, p in enumerate(panels) for name in p.messages]
        answer_prompts, neutral = self._prompts(self.prompts.grounded, [queries[i] for i, _ in jobs], [panels[i].messages[name] for i, name in jobs])
        labels = [option_labels(len(queries[i].options)) for i, _ in jobs]
        answers = self._choose(answer_prompts, labels, self.prompts.ANSWER_PREFIX, neutral)
        results = []
        for i, (q, p) in enumerate(zip(queries, panels)):
            names, weights = p.pool.names, p.pool.resolve_weights(q.weights)
            mine = {name: answers[j] for j, (k, name) in enumerate(jobs) if k == i}
            per = {name: reading.probs for name, (reading, _) in mine.items()}
            result = self._result(
                "distributional", q, p, options=list(q.options), distribution=_mixture(weights, [per[n] for n in names]),
                option_mass=sum(w * mine[n][1] for w, n in zip(weights, names)), community_distributions=per, weights=dict(zip(names, weights)),
                main_prompts=[prompt for prompt, (k, _) in zip(answer_prompts, jobs) if k == i],
            )
            first = mine[names[0]][0]
            if first.raw is not None:  # calibrated: every voice's prompt has the same content-free form, so one prior
                result.raw_distribution, result.prior = _mixture(weights, [mine[n][0].raw for n in names]), first.prior
            results.append(result)
        return results


def _mixture(weights: list[float], distributions: list[list[float]]) -> list[float]:
    """The weighted average of per-voice distributions (the pool's weights sum to 1)."""
    return [sum(w * d[o] for w, d in zip(weights, distributions)) for o in range(len(distributions[0]))]


class ModularPluralism(Collaboration):
    """The main LLM plus a community pool: every community of the pool is a voice on every query."""

    name = "modular"

    def __init__(self, main: Backend, pool: CommunityPool, protocol: Protocol | str | Mapping | None = None, seed: int = 0) -> None:
        super().__init__(main, protocol, seed)
        self.pool = pool

    def _panels(self, queries: list[Query], mode: Mode) -> list[Panel]:
        messages = self._community_messages(self.pool, [self.prompts.community(q, mode) for q in queries])
        return [Panel(self.pool, m) for m in messages]
