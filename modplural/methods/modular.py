"""Modular Pluralism: community LMs write messages, the main LLM collaborates with them in three modes."""

from __future__ import annotations

from typing import Mapping

from modplural.backends.base import Backend
from modplural.methods.base import Method
from modplural.pool import CommunityPool
from modplural.prompts import option_labels
from modplural.protocol import Protocol
from modplural.types import PluralResult, Query


class ModularPluralism(Method):
    """The main LLM plus a community pool.

    * Overton: every community comments on the query; the main LLM writes one response grounded on all of
      the comments, instructed to reflect diverse values and perspectives.
    * Steerable: every community responds; the main LLM picks the message that best reflects the attribute
      (``selection_reading``), then answers grounded on the chosen message.
    * Distributional: each community's message conditions the main LLM's distribution over the options;
      the per-community distributions are averaged with weights (uniform by default, as in the original).
    """

    name = "modular"

    def __init__(self, main: Backend, pool: CommunityPool, protocol: Protocol | str | Mapping | None = None, seed: int = 0) -> None:
        super().__init__(main, protocol, seed)
        self.pool = pool

    def _messages(self, queries: list[Query], mode: str) -> list[dict[str, str]]:
        return self._community_messages(self.pool, [self.prompts.community(q, mode) for q in queries])

    def _overton(self, queries: list[Query]) -> list[PluralResult]:
        messages = self._messages(queries, "overton")
        results = [PluralResult("overton", self.name, q.text, community_messages=m) for q, m in zip(queries, messages)]
        self._answer("overton", [self.prompts.overton(q, list(m.values())) for q, m in zip(queries, messages)], queries, results)
        return results

    def _steerable(self, queries: list[Query]) -> list[PluralResult]:
        messages = self._messages(queries, "steerable")
        selection_prompts = [self.prompts.selection(q, list(m.values())) for q, m in zip(queries, messages)]
        picks = self._select(selection_prompts, [len(m) for m in messages], self.protocol.selection_tokens)
        results = []
        for q, m, pick in zip(queries, messages, picks):
            names = list(m)
            results.append(PluralResult(
                "steerable", self.name, q.text, community_messages=m, chosen_community=names[pick.index],
                selection_scores=dict(zip(names, pick.scores)) if pick.scores is not None else None,
                selection_mass=pick.mass, selection_text=pick.text,
            ))
        answer_prompts = [self.prompts.grounded(q, r.community_messages[r.chosen_community]) for q, r in zip(queries, results)]
        for result, (selection, _) in zip(results, selection_prompts):
            result.main_prompts.append(selection)
        self._answer("steerable", answer_prompts, queries, results)
        return results

    def _distributional(self, queries: list[Query]) -> list[PluralResult]:
        messages = self._messages(queries, "distributional")
        names = self.pool.names
        jobs = [(i, name) for i in range(len(queries)) for name in names]
        answer_prompts = [self.prompts.grounded(queries[i], messages[i][name]) for i, name in jobs]
        labels = [option_labels(len(queries[i].options)) for i, _ in jobs]
        answers = self._choose(answer_prompts, labels, self.prompts.ANSWER_PREFIX)
        results = []
        for i, q in enumerate(queries):
            weights = self.pool.resolve_weights(q.weights)
            per = {name: answers[j][0] for j, (k, name) in enumerate(jobs) if k == i}
            masses = [answers[j][1] for j, (k, _) in enumerate(jobs) if k == i]
            aggregate = [sum(w * per[n][o] for w, n in zip(weights, names)) for o in range(len(q.options))]
            results.append(PluralResult(
                "distributional", self.name, q.text, options=list(q.options), distribution=aggregate,
                option_mass=sum(w * m for w, m in zip(weights, masses)), community_messages=messages[i],
                community_distributions=per, weights=dict(zip(names, weights)),
                main_prompts=[p for p, (k, _) in zip(answer_prompts, jobs) if k == i],
            ))
        return results
