"""What every method (Modular Pluralism and the baselines) shares: validation, the protocol's prompts, and the
ways the main LLM answers (free text, a distribution over lettered options, a selection among numbered texts).

Where the protocols differ (``modplural/protocol.py``) is decided here, once: ``main_input`` (raw text or chat
template), ``answer_reading`` (top-10 or exact), ``selection_reading`` (sampled or exact), ``main_temperature``.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, TypeVar

from modplural.backends.base import Backend, Decoding, GenerateRequest, NextTokenRequest, OptionRequest
from modplural.backends.label_tokens import read_top_tokens_original
from modplural.calibration import blank, calibrate, content_free, mean_priors, prior_key
from modplural.errors import ModPluralError
from modplural.method_protocols import check_method_protocol
from modplural.pool import CommunityPool
from modplural.prompts import for_protocol, option_labels
from modplural.protocol import SAMPLING_TOP_K, Protocol, resolve_protocol
from modplural.text import last_complete_sentence
from modplural.types import PluralResult, Query, check_mode
from modplural.seeds import derived_seed

TOP_TOKENS_READ = 10  # answer_reading: top10 reads probabilities.topk(10)
NO_REPEAT_NGRAM = 4  # repetition: ngram4
T = TypeVar("T")


@dataclass(frozen=True)
class Selection:
    """Which of K texts the main LLM picked (0-based), and how the pick was read."""

    index: int
    scores: list[float] | None = None  # exact reading: the (calibrated) distribution over 1..K
    mass: float | None = None
    text: str | None = None  # sampled reading: the answer the number was parsed from
    reading: "Reading | None" = None  # exact reading: with the raw scores and prior where calibration is on

    def fill(self, result: PluralResult, names: Sequence[str]) -> None:
        """Record the pick in ``result``: the chosen name, how it was read, and the raw scores and prior if calibrated."""
        result.chosen_community = names[self.index]
        result.selection_scores = dict(zip(names, self.scores)) if self.scores is not None else None
        result.selection_mass, result.selection_text = self.mass, self.text
        if self.reading is not None and self.reading.raw is not None:
            result.raw_selection_scores, result.selection_prior = dict(zip(names, self.reading.raw)), self.reading.prior


@dataclass(frozen=True)
class Reading:
    """A distribution read from the main LLM: what is used (calibrated where calibration is on), what was read, the prior."""

    probs: list[float]
    raw: list[float] | None = None  # None: calibration off
    prior: list[float] | None = None

    def fill(self, result: PluralResult) -> None:
        """Set the result's distribution, and its raw distribution and prior where calibration is on."""
        result.distribution = self.probs
        if self.raw is not None:
            result.raw_distribution, result.prior = self.raw, self.prior


class Method:
    """Base class: subclasses implement ``_overton``, ``_steerable`` and ``_distributional`` over lists of queries."""

    name = "method"

    def __init__(self, main: Backend, protocol: Protocol | str | Mapping | None = None, seed: int = 0) -> None:
        self.main = main
        self.protocol = self.check_protocol(resolve_protocol(protocol))
        self.prompts = for_protocol(self.protocol.prompts)
        self.seed = seed
        self.priors: dict[str, list[float]] | None = None  # calibration split: given by with_priors (fitted by fit_priors)
        self._content_free_priors: dict[tuple[str, tuple[str, ...]], list[float]] = {}

    @classmethod
    def check_protocol(cls, protocol: Protocol) -> Protocol:
        """``protocol``, or a one-line error where this method has no version of it (``method_protocols.py``)."""
        return check_method_protocol(cls.name, protocol)

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

    def _prompts(self, build: Callable[..., T], queries: Sequence[Query], *columns: Sequence) -> tuple[list[T], list[T] | None]:
        """``build(q, *row)`` per query, and under ``calibration: content_free`` the same built from the content-free
        query with every text of the row blanked (``N/A``); texts that are not the item's (MoE's descriptions) go
        into ``build`` itself."""
        prompts = [build(q, *row) for q, *row in zip(queries, *columns)]
        if self.protocol.calibration != "content_free":
            return prompts, None
        return prompts, [build(content_free(q), *(blank(x) for x in row)) for q, *row in zip(queries, *columns)]

    def _read(self, prompts: Sequence[str], labels: Sequence[Sequence[str]], prefix: str) -> list[tuple[list[float], float]]:
        """The main LLM's distribution over each prompt's labels, and the raw mass on them (``answer_reading``)."""
        if self.protocol.answer_reading == "top10":
            if not hasattr(self.main, "next_tokens"):
                raise ModPluralError(f"answer_reading top10 needs a backend that lists next-token probabilities ({type(self.main).__name__} does not)")
            tops = self.main.next_tokens([NextTokenRequest(**self._input(p, prefix), k=TOP_TOKENS_READ) for p in prompts])
            results = [read_top_tokens_original(tuple(l), top) for l, top in zip(labels, tops)]
        else:
            results = self.main.option_probs([OptionRequest(labels=tuple(l), **self._input(p, prefix)) for p, l in zip(prompts, labels)])
        return [(list(r.probs), r.mass) for r in results]

    def _priors(self, kind: str, labels: Sequence[Sequence[str]], prefix: str, neutral: Sequence[str] | None, read) -> list[list[float] | None]:
        """Each row's calibration prior: content-free (read once per distinct content-free prompt, then reused) or
        the split priors of its label count (None where the calibration items had no such count)."""
        if self.protocol.calibration == "split":
            if self.priors is None:
                raise ModPluralError("calibration split needs priors from calibration items: method.with_priors(method.fit_priors(mode, queries)) "
                                     "on items outside the evaluated ones (modplural run does, with the config's calibration_items)")
            return [self.priors.get(prior_key(kind, len(l))) for l in labels]
        if neutral is None:
            raise ModPluralError(f"calibration content_free: no content-free prompts were built for this {kind}")
        missing = {(p, tuple(l)) for p, l in zip(neutral, labels)} - self._content_free_priors.keys()
        if missing:
            missing = sorted(missing)
            for key, (probs, _) in zip(missing, read([p for p, _ in missing], [l for _, l in missing], prefix)):
                self._content_free_priors[key] = probs
        return [self._content_free_priors[(p, tuple(l))] for p, l in zip(neutral, labels)]

    def _calibrated(self, kind: str, raw: list[list[float]], labels: Sequence[Sequence[str]], prefix: str, neutral: Sequence[str] | None, read) -> list[Reading]:
        """Raw distributions -> readings, divided by their priors when calibration is on."""
        if self.protocol.calibration == "none":
            return [Reading(probs) for probs in raw]
        priors = self._priors(kind, labels, prefix, neutral, read)
        return [Reading(calibrate(probs, prior, f"{kind} over {', '.join(l)}") if prior is not None else probs, probs, prior)
                for probs, prior, l in zip(raw, priors, labels)]

    def _choose(self, prompts: Sequence[str], labels: Sequence[Sequence[str]], prefix: str, neutral: Sequence[str] | None = None) -> list[tuple[Reading, float]]:
        """Each prompt's (calibrated) distribution over its labels, and the raw mass on them."""
        read = self._read(prompts, labels, prefix)
        readings = self._calibrated("answer", [probs for probs, _ in read], labels, prefix, neutral, self._read)
        return [(reading, mass) for reading, (_, mass) in zip(readings, read)]

    def _select(self, prompts: Sequence[tuple[str, str]], counts: Sequence[int], sampled_tokens: int, neutral: Sequence[tuple[str, str]] | None = None) -> list[Selection]:
        """Each prompt's pick among its ``count`` numbered texts (``selection_reading``).

        sampled (the original): an answer sampled with the main decoding; the first of 1..K (in that order) found in
        it; none -> a random pick, seeded by the prompt (no distribution, so nothing to calibrate). exact: the argmax
        of the (calibrated) label probabilities of 1..K.
        """
        if self.protocol.selection_reading == "exact":
            labels = [tuple(str(i) for i in range(1, k + 1)) for k in counts]
            prefix = prompts[0][1] if prompts else ""
            if any(p != prefix for _, p in prompts):
                raise ModPluralError("selection prompts of one call must share their answer prefix")
            read = self._read([p for p, _ in prompts], labels, prefix)
            readings = self._calibrated("selection", [probs for probs, _ in read], labels, prefix, [p for p, _ in neutral] if neutral else None, self._read)
            return [Selection(max(range(len(r.probs)), key=r.probs.__getitem__), r.probs, mass, reading=r) for r, (_, mass) in zip(readings, read)]
        texts = self._generate([f"{p}\n{prefix}" if prefix else p for p, prefix in prompts], sampled_tokens, answer=False)
        picks = []
        for (prompt, _), k, text in zip(prompts, counts, texts):
            found = next((i for i in range(k) if str(i + 1) in text), None)
            if found is None:
                found = random.Random(derived_seed(self.seed, "fallback", prompt)).randrange(k)
            picks.append(Selection(found, text=text))
        return picks

    def _answer(self, mode: str, prompts: Sequence[str], queries: Sequence[Query], results: Sequence[PluralResult], neutral: Sequence[str] | None = None) -> None:
        """Fill each result with free text, or with a (calibrated) distribution over the query's options."""
        with_options = [i for i, q in enumerate(queries) if q.options]
        free = [i for i, q in enumerate(queries) if not q.options]
        if free:
            tokens = self.protocol.steer_tokens if mode == "steerable" else self.protocol.main_tokens
            for i, text in zip(free, self._generate([prompts[i] for i in free], tokens)):
                results[i].response = text
        if with_options:
            labels = [option_labels(len(queries[i].options)) for i in with_options]
            answers = self._choose([prompts[i] for i in with_options], labels, self.prompts.ANSWER_PREFIX, [neutral[i] for i in with_options] if neutral else None)
            for i, (reading, mass) in zip(with_options, answers):
                results[i].options, results[i].option_mass = list(queries[i].options), mass
                reading.fill(results[i])
        for result, prompt in zip(results, prompts):
            result.main_prompts.append(prompt)

    # calibration priors from calibration items -----------------------------------------------------------------
    def fit_priors(self, mode: str, queries: Sequence[Query]) -> dict[str, list[float]]:
        """Split calibration: the mean distributions of ``mode`` run uncalibrated on ``queries`` (items outside the
        evaluated ones); ``with_priors`` gives them to a method. This method is left as it was."""
        return mean_priors(self.under(calibration="none").run(mode, queries))

    def with_priors(self, priors: dict[str, list[float]]) -> "Method":
        """A copy of this method that calibrates with ``priors`` (calibration split)."""
        return self._copy(priors=priors)

    def under(self, **switches) -> "Method":
        """A copy of this method under its protocol with ``switches`` flipped (same models, pool and seed)."""
        protocol = self.check_protocol(resolve_protocol({"base": self.protocol, **switches}))
        return self._copy(protocol=protocol, prompts=for_protocol(protocol.prompts))

    def _copy(self, **attributes) -> "Method":
        twin = copy.copy(self)
        twin.__dict__.update(attributes)
        return twin
