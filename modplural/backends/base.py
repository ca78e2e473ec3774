"""The backend protocol: the only two primitives that every layer above a model uses.

* ``generate(requests) -> list[str]``: chat messages or a raw prompt, an adapter, decoding settings.
* ``option_probs(requests) -> list[OptionResult]``: a distribution over option labels read from the
  full next-token softmax at the answer position.

Backends return results in request order; how they batch is their own business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from modplural.errors import ModPluralError

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class Decoding:
    """Decoding settings: greedy when ``temperature == 0``, else temperature/top-p sampling with a seed."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    top_k: int = 0  # sample among the k likeliest tokens only (0: no limit; transformers' generate defaults to 50)
    frequency_penalty: float = 0.0  # minus this times each token's count in the generated text (backends/repetition.py)
    no_repeat_ngram: int = 0  # n >= 2: never generate an n-gram twice (0: off)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ModPluralError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise ModPluralError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ModPluralError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ModPluralError(f"top_k must be >= 0, got {self.top_k}")
        if not math.isfinite(self.frequency_penalty):
            raise ModPluralError(f"frequency_penalty must be a finite number, got {self.frequency_penalty}")
        if self.no_repeat_ngram == 1 or self.no_repeat_ngram < 0:
            raise ModPluralError(f"no_repeat_ngram must be 0 (off) or at least 2, got {self.no_repeat_ngram}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _check_input(messages: Sequence[Message] | None, prompt: str | None) -> None:
    if (messages is None) == (prompt is None):
        raise ModPluralError("a request needs exactly one of messages or prompt")
    if messages is not None:
        if not messages:
            raise ModPluralError("a request's messages are empty")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ModPluralError(f"message {i} must be a dict with 'role' and 'content'")


@dataclass(frozen=True)
class GenerateRequest:
    """One text to generate. ``adapter=None`` uses the base (main) model."""

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    adapter: str | None = None
    decoding: Decoding = field(default_factory=Decoding)

    def __post_init__(self) -> None:
        if self.messages is not None:
            object.__setattr__(self, "messages", tuple(self.messages))
        _check_input(self.messages, self.prompt)


@dataclass(frozen=True)
class OptionRequest:
    """A distribution over ``labels`` for the token that follows the prompt (and ``answer_prefix``).

    With chat ``messages``, the prompt is the chat template with the generation prompt, followed by
    ``answer_prefix`` (e.g. ``"Answer: ("``) as the start of the assistant's turn.
    """

    labels: tuple[str, ...]
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    adapter: str | None = None
    answer_prefix: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.messages is not None:
            object.__setattr__(self, "messages", tuple(self.messages))
        _check_input(self.messages, self.prompt)
        if len(self.labels) < 2:
            raise ModPluralError(f"option_probs needs at least two option labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ModPluralError(f"option labels must be distinct, got {list(self.labels)}")
        if any(not str(label).strip() for label in self.labels):
            raise ModPluralError(f"option labels must be non-empty, got {list(self.labels)}")


@dataclass(frozen=True)
class NextTokenRequest:
    """The ``k`` likeliest next tokens after the prompt (and ``answer_prefix``), as the original scripts read answers."""

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    adapter: str | None = None
    answer_prefix: str = ""
    k: int = 10

    def __post_init__(self) -> None:
        if self.messages is not None:
            object.__setattr__(self, "messages", tuple(self.messages))
        _check_input(self.messages, self.prompt)
        if self.k < 1:
            raise ModPluralError(f"k must be at least 1, got {self.k}")


TopTokens = list[tuple[str, float]]  # decoded token text and probability, likeliest first


@dataclass(frozen=True)
class OptionResult:
    """A normalized distribution over the labels, the raw probability mass that fell on them, and ``unread``:
    probability of label spellings too unlikely to be followed (an upper bound on what reading missed)."""

    labels: tuple[str, ...]
    probs: tuple[float, ...]
    mass: float
    unread: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.labels, self.probs))


@runtime_checkable
class Backend(Protocol):
    """What the collaboration layer needs from a model server, local or remote."""

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]: ...

    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]: ...

    def adapter_identity(self, adapter: str | None) -> str: ...


@runtime_checkable
class TopTokenBackend(Protocol):
    """Optional: backends that can list the likeliest next tokens (needed by ``answer_reading: top10``)."""

    def next_tokens(self, requests: Sequence[NextTokenRequest]) -> list[TopTokens]: ...


@runtime_checkable
class TokenScorer(Protocol):
    """Optional: backends that score given token blocks with their tokenizer (needed by the distinctness matrix)."""

    tokenizer: object  # transformers PreTrainedTokenizerBase: what the blocks are tokenized with

    def token_nll(self, blocks: Sequence[Sequence[int]], adapters: Sequence[str | None]) -> list[tuple[float, int]]: ...
