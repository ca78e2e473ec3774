"""Baselines with the same interface as Modular Pluralism, so an experiment swaps methods by name."""

from __future__ import annotations

from typing import Mapping

from modplural.backends.base import Backend
from modplural.methods.base import Method
from modplural.pool import CommunityPool
from modplural.protocol import Protocol
from modplural.types import PluralResult, Query


class Vanilla(Method):
    """The main LLM alone, asked the query (``modplural`` prompts: with the task's persona framing, if any)."""

    name = "vanilla"

    def _prompt(self, q: Query, mode: str) -> str:
        return self.prompts.vanilla(q)

    def _run(self, mode: str, queries: list[Query]) -> list[PluralResult]:
        results = [PluralResult(mode, self.name, q.text) for q in queries]
        prompts, neutral = self._prompts(lambda q: self._prompt(q, mode), queries)
        self._answer(mode, prompts, queries, results, neutral)
        return results

    def _overton(self, queries: list[Query]) -> list[PluralResult]:
        return self._run("overton", queries)

    def _steerable(self, queries: list[Query]) -> list[PluralResult]:
        return self._run("steerable", queries)

    def _distributional(self, queries: list[Query]) -> list[PluralResult]:
        return self._run("distributional", queries)


class Prompting(Vanilla):
    """The main LLM asked to reflect diverse values and perspectives (or the attribute, or real-world distributions)."""

    name = "prompting"

    def _prompt(self, q: Query, mode: str) -> str:
        return self.prompts.prompting(q, mode)


class MixtureOfExperts(Vanilla):
    """The main LLM picks one community by its description, then answers grounded on that community's message."""

    name = "moe"

    def __init__(self, main: Backend, pool: CommunityPool, protocol: Protocol | str | Mapping | None = None, seed: int = 0) -> None:
        super().__init__(main, protocol, seed)
        self.pool = pool

    def _run(self, mode: str, queries: list[Query]) -> list[PluralResult]:
        descriptions = [c.description for c in self.pool.communities]
        selection, neutral = self._prompts(lambda q: self.prompts.expert_selection(q, descriptions), queries)
        # the original samples 5 tokens before a free-text answer and 20 before an option answer
        tokens = self.protocol.selection_tokens if all(q.options for q in queries) else self.protocol.expert_tokens
        picks = self._select(selection, [len(descriptions)] * len(queries), tokens, neutral)
        results = []
        for q, pick in zip(queries, picks):
            results.append(PluralResult(mode, self.name, q.text))
            pick.fill(results[-1], self.pool.names)
        by_community: dict[str, list[int]] = {}
        for i, result in enumerate(results):
            by_community.setdefault(result.chosen_community, []).append(i)
        for name, indices in by_community.items():
            prompts = [self.prompts.community(queries[i], mode) for i in indices]
            for i, message in zip(indices, self._community_messages(self.pool, prompts, [name])):
                results[i].community_messages = message
        for result, (prompt, _) in zip(results, selection):
            result.main_prompts.append(prompt)
        chosen = [r.community_messages[r.chosen_community] for r in results]
        prompts, neutral = self._prompts(self.prompts.expert_answer, queries, chosen)
        self._answer(mode, prompts, queries, results, neutral)
        return results
