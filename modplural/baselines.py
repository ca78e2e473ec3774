"""Baselines with the same interface as Modular Pluralism, so an experiment swaps methods by name."""

from __future__ import annotations

from modplural import prompts
from modplural.backends.base import Backend, Decoding
from modplural.method_base import MAIN_DECODING, Method, PluralResult, Query
from modplural.pool import CommunityPool


class Vanilla(Method):
    """The main LLM alone, asked the query (with the task's persona framing, if any)."""

    name = "vanilla"

    def _run(self, mode: str, queries: list[Query]) -> list[PluralResult]:
        results = [PluralResult(mode, self.name, q.text) for q in queries]
        self._answer([prompts.plain_answer(q.text, q.options, q.persona) for q in queries], queries, results)
        return results

    def _overton(self, queries: list[Query]) -> list[PluralResult]:
        return self._run("overton", queries)

    def _steer(self, queries: list[Query]) -> list[PluralResult]:
        return self._run("steer", queries)

    def _distribution(self, queries: list[Query]) -> list[PluralResult]:
        return self._run("distribution", queries)


class Prompting(Vanilla):
    """The main LLM asked to reflect diverse values and perspectives (or the attribute, or real-world distributions)."""

    name = "prompting"

    def _run(self, mode: str, queries: list[Query]) -> list[PluralResult]:
        results = [PluralResult(mode, self.name, q.text) for q in queries]
        texts = [prompts.prompting_answer(q.text, mode, q.options, q.attribute, q.persona) for q in queries]
        self._answer(texts, queries, results)
        return results


class MixtureOfExperts(Vanilla):
    """The main LLM picks one community by its description, then answers grounded on that community's message."""

    name = "moe"

    def __init__(self, main: Backend, pool: CommunityPool, main_decoding: Decoding = MAIN_DECODING) -> None:
        super().__init__(main, main_decoding)
        self.pool = pool

    def _run(self, mode: str, queries: list[Query]) -> list[PluralResult]:
        descriptions = [c.description for c in self.pool.communities]
        selection = [prompts.moe_selection(prompts.plain_answer(q.text, q.options, q.persona), descriptions) for q in queries]
        numbers = [str(i) for i in range(1, len(descriptions) + 1)]
        scores = self._choose(selection, [numbers] * len(queries), prompts.EXPERT_PREFIX)
        results, chosen = [], []
        for q, (dist, _) in zip(queries, scores):
            ranked = dict(zip(self.pool.names, dist))
            chosen.append(max(ranked, key=ranked.get))
            results.append(PluralResult(mode, self.name, q.text, selection_scores=ranked, chosen_community=chosen[-1]))
        community_prompts = [prompts.community_prompt(q.text, q.options, q.persona, explain=mode != "overton") for q in queries]
        by_community: dict[str, list[int]] = {}
        for i, name in enumerate(chosen):
            by_community.setdefault(name, []).append(i)
        for name, indices in by_community.items():
            for i, message in zip(indices, self.pool.messages([community_prompts[i] for i in indices], [name])):
                results[i].community_messages = message
        for result, prompt in zip(results, selection):
            result.main_prompts.append(prompt)
        answers = [prompts.grounded_answer(q.text, r.community_messages[r.chosen_community], q.options, q.persona) for q, r in zip(queries, results)]
        self._answer(answers, queries, results)
        return results
