"""What every method (Modular Pluralism and the baselines) shares: the query and result types, validation,
and the two ways the main LLM answers (free text, or a distribution over lettered options)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

from modplural.backends.base import Backend, Decoding, GenerateRequest, OptionRequest
from modplural.errors import ModPluralError
from modplural.prompts import ANSWER_PREFIX, option_labels
from modplural.validation import WEIGHT_NAMES, check_options, check_text, check_weights

MODES = ("overton", "steer", "distribution")
# The original answers with temperature 0.1; we decode the main LLM greedily by default (configurable).
MAIN_DECODING = Decoding(max_new_tokens=200)


@dataclass(frozen=True)
class Query:
    """One item for a method: the text, and what the mode needs besides it."""

    text: str
    options: tuple[str, ...] | None = None
    attribute: str | None = None  # steer: what to reflect, e.g. "the value of Autonomy"
    persona: str | None = None  # optional framing sentence, e.g. "You are from the country of Japan."
    weights: tuple[float, ...] | str | None = None  # distribution: None/'uniform', 'registry' or one per community

    def __post_init__(self) -> None:
        if not check_text(self.text, "the query").strip():
            raise ModPluralError("the query is empty")
        if self.options is not None:
            options = check_options(self.options)
            object.__setattr__(self, "options", options)
            if len(options) < 2:
                raise ModPluralError(f"need at least two options, got {len(options)}")
            if any(not check_text(o, f"option {i + 1}").strip() for i, o in enumerate(options)):
                raise ModPluralError("options must be non-empty strings")
            if len({o.strip().lower() for o in options}) != len(options):
                raise ModPluralError(f"options must be distinct, got {list(options)}")
            if len(options) > 26:
                raise ModPluralError(f"at most 26 options are supported, got {len(options)}")
        if self.attribute is not None and not check_text(self.attribute, "the attribute").strip():
            raise ModPluralError("the attribute is empty")
        if self.persona is not None:
            check_text(self.persona, "the persona")
        if self.weights is not None and not (isinstance(self.weights, str) and self.weights in WEIGHT_NAMES):
            object.__setattr__(self, "weights", check_weights(self.weights))


QUERY_FIELDS = frozenset(f.name for f in fields(Query))


def query_from(value: str | dict) -> Query:
    """A query from a string or a dict of ``Query`` fields (what a LangChain runnable is given)."""
    if isinstance(value, str):
        return Query(value)
    if isinstance(value, dict) and "text" in value and set(value) <= QUERY_FIELDS:
        return Query(**value)
    raise ModPluralError(f"expected a query string or a dict with 'text' and any of {', '.join(sorted(QUERY_FIELDS))}, got {value!r}")


@dataclass
class PluralResult:
    """What a method returns for one query; ``to_dict`` is what the CLI prints and the runner stores."""

    mode: str
    method: str
    query: str
    response: str | None = None
    options: list[str] | None = None
    distribution: list[float] | None = None
    option_mass: float | None = None  # raw main-LLM probability on the option labels (validity diagnostic)
    chosen_community: str | None = None
    selection_scores: dict[str, float] | None = None
    community_messages: dict[str, str] = field(default_factory=dict)
    community_distributions: dict[str, list[float]] | None = None
    weights: dict[str, float] | None = None
    main_prompts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class Method:
    """Base class: subclasses implement ``_overton``, ``_steer`` and ``_distribution`` over lists of queries."""

    name = "method"

    def __init__(self, main: Backend, main_decoding: Decoding = MAIN_DECODING) -> None:
        self.main = main
        self.main_decoding = main_decoding

    # single-item API ------------------------------------------------------------------------------
    def overton(self, query: str) -> PluralResult:
        """One response that covers the spread of views on ``query``."""
        return self.run("overton", [Query(query)])[0]

    def steer(self, query: str, attribute: str, options: Sequence[str] | None = None, persona: str | None = None) -> PluralResult:
        """A response steered to ``attribute``; with ``options``, a distribution over them instead of text."""
        if attribute is None:
            raise ModPluralError("the attribute is empty")
        return self.run("steer", [Query(query, options=options, attribute=attribute, persona=persona)])[0]

    def distribution(self, question: str, options: Sequence[str], weights: Sequence[float] | str | None = None, persona: str | None = None) -> PluralResult:
        """A population distribution over ``options``."""
        if options is None:
            raise ModPluralError("need at least two options, got none")
        return self.run("distribution", [Query(question, options=options, persona=persona, weights=weights)])[0]

    def as_runnable(self, mode: str = "overton"):
        """This method as a LangChain ``Runnable``: input a query string or a dict of ``Query`` fields, output the result dict."""
        from langchain_core.runnables import RunnableLambda

        if mode not in MODES:
            raise ModPluralError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")

        def invoke(value: str | dict) -> dict:
            return self.run(mode, [query_from(value)])[0].to_dict()

        return RunnableLambda(invoke, name=f"{self.name}-{mode}")

    # batched API (experiments) -------------------------------------------------------------------
    def run(self, mode: str, queries: Sequence[Query]) -> list[PluralResult]:
        """Run ``mode`` on many queries at once (model calls are batched across them)."""
        if mode not in MODES:
            raise ModPluralError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        if isinstance(queries, (str, bytes)) or any(not isinstance(q, Query) for q in queries):
            raise ModPluralError("run needs a list of Query objects")
        if mode == "steer" and any(q.attribute is None for q in queries):
            raise ModPluralError("steer needs an attribute for every query")
        if mode == "distribution" and any(q.options is None for q in queries):
            raise ModPluralError("distribution needs at least two options for every query")
        if not queries:
            return []
        return getattr(self, f"_{mode}")(list(queries))

    def _overton(self, queries: list[Query]) -> list[PluralResult]:
        raise NotImplementedError

    def _steer(self, queries: list[Query]) -> list[PluralResult]:
        raise NotImplementedError

    def _distribution(self, queries: list[Query]) -> list[PluralResult]:
        raise NotImplementedError

    # the main LLM ---------------------------------------------------------------------------------
    def _generate(self, prompts: Sequence[str]) -> list[str]:
        return self.main.generate([GenerateRequest(messages=({"role": "user", "content": p},), decoding=self.main_decoding) for p in prompts])

    def _choose(self, prompts: Sequence[str], labels: Sequence[Sequence[str]], prefix: str) -> list[tuple[list[float], float]]:
        """The main LLM's distribution over each prompt's labels, and the raw mass on them."""
        requests = [OptionRequest(labels=tuple(l), messages=({"role": "user", "content": p},), answer_prefix=prefix) for p, l in zip(prompts, labels)]
        return [(list(r.probs), r.mass) for r in self.main.option_probs(requests)]

    def _answer(self, prompts: Sequence[str], queries: Sequence[Query], results: Sequence[PluralResult]) -> None:
        """Fill each result with free text, or with a distribution over the query's options."""
        with_options = [i for i, q in enumerate(queries) if q.options]
        free = [i for i, q in enumerate(queries) if not q.options]
        if free:
            for i, text in zip(free, self._generate([prompts[i] for i in free])):
                results[i].response = text
        if with_options:
            answers = self._choose([prompts[i] for i in with_options], [option_labels(len(queries[i].options)) for i in with_options], ANSWER_PREFIX)
            for i, (dist, mass) in zip(with_options, answers):
                results[i].options, results[i].distribution, results[i].option_mass = list(queries[i].options), dist, mass
        for result, prompt in zip(results, prompts):
            result.main_prompts.append(prompt)
