"""What every method (Modular Pluralism and the baselines) shares: validation, the protocol's prompts, and the
ways the main LLM answers (free text, a distribution over lettered options, a selection among numbered texts).

Where the protocols differ (``modplural/protocol.py``) is decided here, once: ``main_input`` (raw text or chat
template), ``answer_reading`` (top-10 or exact), ``selection_reading`` (sampled or exact), ``main_temperature``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from modplural.backends.base import Backend, Decoding, GenerateRequest, NextTokenRequest, OptionRequest
from modplural.backends.label_tokens import read_top_tokens_original
from modplural.errors import ModPluralError
from modplural.pool import CommunityPool
from modplural.prompts import for_protocol, option_labels
from modplural.protocol import SAMPLING_TOP_K, Protocol, resolve_protocol
from modplural.text import last_complete_sentence
from modplural.types import PluralResult, Query, check_mode

TOP_TOKENS_READ = 10  # answer_reading: top10 reads probabilities.topk(10)
NO_REPEAT_NGRAM = 4  # repetition: ngram4


def derived_seed(*parts: Any) -> int:
    """A 32-bit seed from text parts: reproducible, independent of batching."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


@dataclass(frozen=True)
class Selection:
    """Which of K texts the main LLM picked (0-based), and how the pick was read."""

    index: int
    scores: list[float] | None = None  # exact reading: the distribution over 1..K
    mass: float | None = None
    text: str | None = None  # sampled reading: the answer the number was parsed from


class Method:
    """Base class: subclasses implement ``_overton``, ``_steerable`` and ``_distributional`` over lists of queries."""

    name = "method"

    def __init__(self, main: Backend, protocol: Protocol | str | Mapping | None = None, seed: int = 0) -> None:
        self.main = main
        self.protocol = self.check_protocol(resolve_protocol(protocol))
        self.prompts = for_protocol(self.protocol.prompts)
        self.seed = seed

    @classmethod
    def check_protocol(cls, protocol: Protocol) -> Protocol:
        """``protocol``, or a one-line error where this method has no version of it (here: every protocol)."""
        return protocol

    # single-item API ------------------------------------------------------------------------------
    def overton(self, query: str) -> PluralResult:
        """One response that covers the spread of views on ``query``."""
        return self.run("overton", [Query(query)])[0]

    def steerable(self, query: str, attribute: str, options: Sequence[str] | None = None, persona: str | None = None) -> PluralResult:
        """A response steered to ``attribute``; with ``options``, a distribution over them instead of text."""
        if attribute is None:
            raise ModPluralError("the attribute is empty")
        return self.run("steerable", [Query(query, options=options, attribute=attribute, persona=persona)])[0]

    def distributional(self, question: str, options: Sequence[str], weights: Sequence[float] | str | None = None, persona: str | None = None) -> PluralResult:
        """A population distribution over ``options``."""
        if options is None:
            raise ModPluralError("need at least two options, got none")
        return self.run("distributional", [Query(question, options=options, persona=persona, weights=weights)])[0]

    def as_runnable(self, mode: str = "overton"):
        """This method as a LangChain ``Runnable`` (see ``modplural.integrations.langchain.as_runnable``)."""
        from modplural.integrations.langchain import as_runnable

        return as_runnable(self, mode)

    # batched API (experiments) -------------------------------------------------------------------
    def run(self, mode: str, queries: Sequence[Query]) -> list[PluralResult]:
        """Run ``mode`` on many queries at once (model calls are batched across them)."""
        mode = check_mode(mode)
        if isinstance(queries, (str, bytes)) or any(not isinstance(q, Query) for q in queries):
            raise ModPluralError("run needs a list of Query objects")
        if mode == "steerable" and any(q.attribute is None for q in queries):
            raise ModPluralError("steerable needs an attribute for every query")
        if mode == "distributional" and any(q.options is None for q in queries):
            raise ModPluralError("distributional needs at least two options for every query")
        if not queries:
            return []
        return getattr(self, f"_{mode}")(list(queries))

    def _overton(self, queries: list[Query]) -> list[PluralResult]:
        raise NotImplementedError

    def _steerable(self, queries: list[Query]) -> list[PluralResult]:
        raise NotImplementedError

    def _distributional(self, queries: list[Query]) -> list[PluralResult]:
        raise NotImplementedError

    # the main LLM ---------------------------------------------------------------------------------
    def _input(self, prompt: str, prefix: str = "") -> dict:
        """Request fields: raw text (``main_input: raw``) or a chat turn opened by ``prefix``."""
        if self.protocol.main_input == "raw":
            return {"prompt": f"{prompt}\n{prefix}" if prefix else prompt}
        fields: dict = {"messages": ({"role": "user", "content": prompt},)}
        if prefix:  # option and selection requests only (generation has no prefix)
            fields["answer_prefix"] = prefix
        return fields

    def _decoding(self, tokens: int, prompt: str, answer: bool) -> Decoding:
        """The main LLM's decoding; ``answer``: a free-text answer (``repetition`` applies), not a sampled selection."""
        repetition = {"no_repeat_ngram": NO_REPEAT_NGRAM} if answer and self.protocol.repetition == "ngram4" else {}
        temperature = self.protocol.main_temperature
        if temperature == 0:
            return Decoding(max_new_tokens=tokens, **repetition)
        return Decoding(max_new_tokens=tokens, temperature=temperature, top_k=SAMPLING_TOP_K, seed=derived_seed(self.seed, "main", prompt), **repetition)

    def _generate(self, prompts: Sequence[str], tokens: int, answer: bool = True) -> list[str]:
        return self.main.generate([GenerateRequest(**self._input(p), decoding=self._decoding(tokens, p, answer)) for p in prompts])

    def _community_messages(self, pool: CommunityPool, prompts: Sequence[str], names: Sequence[str] | None = None) -> list[dict[str, str]]:
        """``pool.messages``, trimmed (``_trim``)."""
        return self._trim(pool.messages(prompts, names))

    def _trim(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """Each message trimmed to its last complete sentence under ``message_trim: sentence``."""
        if self.protocol.message_trim == "sentence":
            return [{name: last_complete_sentence(text) for name, text in m.items()} for m in messages]
        return messages

    def _choose(self, prompts: Sequence[str], labels: Sequence[Sequence[str]], prefix: str) -> list[tuple[list[float], float]]:
        """The main LLM's distribution over each prompt's labels, and the raw mass on them (``answer_reading``)."""
        if self.protocol.answer_reading == "top10":
            if not hasattr(self.main, "next_tokens"):
                raise ModPluralError(f"answer_reading top10 needs a backend that lists next-token probabilities ({type(self.main).__name__} does not)")
            tops = self.main.next_tokens([NextTokenRequest(**self._input(p, prefix), k=TOP_TOKENS_READ) for p in prompts])
            results = [read_top_tokens_original(tuple(l), top) for l, top in zip(labels, tops)]
        else:
            results = self.main.option_probs([OptionRequest(labels=tuple(l), **self._input(p, prefix)) for p, l in zip(prompts, labels)])
        return [(list(r.probs), r.mass) for r in results]

    def _select(self, prompts: Sequence[tuple[str, str]], counts: Sequence[int], sampled_tokens: int) -> list[Selection]:
        """Each prompt's pick among its ``count`` numbered texts (``selection_reading``).

        sampled (the original): an answer sampled with the main decoding; the first of 1..K (in that order) found in
        it; none -> a random pick, seeded by the prompt. exact: the argmax of the label probabilities of 1..K.
        """
        if self.protocol.selection_reading == "exact":
            requests = [OptionRequest(labels=tuple(str(i) for i in range(1, k + 1)), **self._input(p, prefix)) for (p, prefix), k in zip(prompts, counts)]
            return [Selection(max(range(len(r.probs)), key=r.probs.__getitem__), list(r.probs), r.mass) for r in self.main.option_probs(requests)]
        texts = self._generate([f"{p}\n{prefix}" if prefix else p for p, prefix in prompts], sampled_tokens, answer=False)
        picks = []
        for (prompt, _), k, text in zip(prompts, counts, texts):
            found = next((i for i in range(k) if str(i + 1) in text), None)
            if found is None:
                found = random.Random(derived_seed(self.seed, "fallback", prompt)).randrange(k)
            picks.append(Selection(found, text=text))
        return picks

    def _answer(self, mode: str, prompts: Sequence[str], queries: Sequence[Query], results: Sequence[PluralResult]) -> None:
        """Fill each result with free text, or with a distribution over the query's options."""
        with_options = [i for i, q in enumerate(queries) if q.options]
        free = [i for i, q in enumerate(queries) if not q.options]
        if free:
            tokens = self.protocol.steer_tokens if mode == "steerable" else self.protocol.main_tokens
            for i, text in zip(free, self._generate([prompts[i] for i in free], tokens)):
                results[i].response = text
        if with_options:
            labels = [option_labels(len(queries[i].options)) for i in with_options]
            answers = self._choose([prompts[i] for i in with_options], labels, self.prompts.ANSWER_PREFIX)
            for i, (dist, mass) in zip(with_options, answers):
                results[i].options, results[i].distribution, results[i].option_mass = list(queries[i].options), dist, mass
        for result, prompt in zip(results, prompts):
            result.main_prompts.append(prompt)
