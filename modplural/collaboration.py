"""Modular Pluralism: community LMs write messages, the main LLM collaborates with them in three modes."""

from __future__ import annotations

from modplural import prompts
from modplural.backends.base import Backend, Decoding
from modplural.method_base import MAIN_DECODING, Method, PluralResult, Query
from modplural.pool import CommunityPool


class ModularPluralism(Method):
    """The main LLM plus a community pool.

    * Overton: every community comments on the query; the main LLM writes one response grounded on all of
      the comments, instructed to reflect diverse values and perspectives.
    * Steer: every community responds; the main LLM scores which message best reflects the attribute
      (``option_probs`` over the message numbers), then answers grounded on the chosen message.
    * Distribution: each community's message conditions the main LLM's distribution over the options;
      the per-community distributions are averaged with weights (uniform by default, as in the original).
    """

    name = "modular"

    def __init__(self, main: Backend, pool: CommunityPool, main_decoding: Decoding = MAIN_DECODING) -> None:
        super().__init__(main, main_decoding)
        self.pool = pool

    def _overton(self, queries: list[Query]) -> list[PluralResult]:
        messages = self.pool.messages([prompts.community_prompt(q.text) for q in queries])
        results = [PluralResult("overton", self.name, q.text, community_messages=m) for q, m in zip(queries, messages)]
        self._answer([prompts.overton_main(q.text, list(m.values())) for q, m in zip(queries, messages)], queries, results)
        return results

    def _steer(self, queries: list[Query]) -> list[PluralResult]:
        messages = self.pool.messages([prompts.community_prompt(q.text, q.options, q.persona, explain=True) for q in queries])
        selection_prompts = [prompts.steer_selection(q.attribute, list(m.values())) for q, m in zip(queries, messages)]
        numbers = [str(i) for i in range(1, len(self.pool.names) + 1)]
        scores = self._choose(selection_prompts, [numbers] * len(queries), prompts.SELECTION_PREFIX)
        results = []
        for q, m, (dist, _) in zip(queries, messages, scores):
            ranked = dict(zip(m, dist))
            results.append(PluralResult("steer", self.name, q.text, community_messages=m, selection_scores=ranked, chosen_community=max(ranked, key=ranked.get)))
        answer_prompts = [prompts.grounded_answer(q.text, r.community_messages[r.chosen_community], q.options, q.persona) for q, r in zip(queries, results)]
        for result, selection in zip(results, selection_prompts):
            result.main_prompts.append(selection)
        self._answer(answer_prompts, queries, results)
        return results

    def _distribution(self, queries: list[Query]) -> list[PluralResult]:
        messages = self.pool.messages([prompts.community_prompt(q.text, q.options, q.persona) for q in queries])
        names = self.pool.names
        jobs = [(i, name) for i in range(len(queries)) for name in names]
        answer_prompts = [prompts.grounded_answer(queries[i].text, messages[i][name], queries[i].options, queries[i].persona) for i, name in jobs]
        labels = [prompts.option_labels(len(queries[i].options)) for i, _ in jobs]
        answers = self._choose(answer_prompts, labels, prompts.ANSWER_PREFIX)
        results = []
        for i, q in enumerate(queries):
            weights = self.pool.resolve_weights(q.weights)
            per = {name: answers[j][0] for j, (k, name) in enumerate(jobs) if k == i}
            masses = [answers[j][1] for j, (k, _) in enumerate(jobs) if k == i]
            aggregate = [sum(w * per[n][o] for w, n in zip(weights, names)) for o in range(len(q.options))]
            results.append(PluralResult(
                "distribution", self.name, q.text, options=list(q.options), distribution=aggregate,
                option_mass=sum(w * m for w, m in zip(weights, masses)), community_messages=messages[i],
                community_distributions=per, weights=dict(zip(names, weights)),
                main_prompts=[p for p, (k, _) in zip(answer_prompts, jobs) if k == i],
            ))
        return results
