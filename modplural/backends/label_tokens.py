"""Which vocabulary tokens spell an option label (``A``, `` A``, ``▁A`` ...), which tokens are only whitespace
(so that two-token spellings such as ``Ġ`` + ``1`` or ``Ċ`` + ``A`` can be followed), the reading of OpenAI-shaped
``logprobs`` (HTTP servers, LangChain chat models), and the original scripts' top-10 reading."""

from __future__ import annotations

import math
from typing import Any, Sequence

from modplural.backends.base import OptionResult, TopTokens
from modplural.errors import ModPluralError

_MAX_LABEL_CHARS = 16
MASS_TOLERANCE = 1e-3  # probability above 1 that is float rounding (top-k softmax, JSON round trips)
LOGPROB_TOLERANCE = 1e-6  # a log-probability this far above 0 is float rounding, read as 0


class LabelTokens:
    """Index of a tokenizer's vocabulary by decoded, whitespace-stripped text.

    A label's variants are every single token whose decoded text, stripped of whitespace, equals the
    label. Summing their probabilities is what "the model answers with this label" means for the next token.
    """

    def __init__(self, tokenizer) -> None:
        self._by_text: dict[str, list[int]] = {}
        self.whitespace: list[int] = []  # tokens that decode to whitespace only: a label may follow them
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        size = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(size)], clean_up_tokenization_spaces=False)
        for token_id, text in enumerate(texts):
            key = text.strip()
            if token_id in special or not text:
                continue
            if not key:
                self.whitespace.append(token_id)
            elif len(key) <= _MAX_LABEL_CHARS:
                self._by_text.setdefault(key, []).append(token_id)

    def ids(self, labels: Sequence[str]) -> list[list[int]]:
        """Token ids for each label; raises if a label is not a single token."""
        out = []
        for label in labels:
            ids = self._by_text.get(str(label).strip())
            if not ids:
                raise ModPluralError(
                    f"option label {label!r} is not a single token of this model's vocabulary; use short labels such as A, B, C or 1, 2, 3"
                )
            out.append(ids)
        return out


def from_top_tokens(labels: Sequence[str], token_probs: dict[str, float], source: str = "the model") -> OptionResult:
    """A label distribution from the few most likely next tokens (text -> probability), as engines that return
    only a top-k report them: a label's probability sums the tokens that spell it (whitespace stripped), a label
    outside the top-k gets 0, and with no label among them the result is uniform with ``mass == 0``.

    Probabilities outside [0, 1], or labels holding more than probability 1 (beyond ``MASS_TOLERANCE`` of
    rounding) are errors naming ``source``: such numbers are not a distribution and would be normalized away.
    """
    keys = [str(label).strip() for label in labels]
    values = [0.0] * len(keys)
    for token, prob in token_probs.items():
        if not 0.0 <= prob <= 1.0 + MASS_TOLERANCE:  # NaN fails too
            raise ModPluralError(f"{source} gave token {token!r} the probability {prob!r}, outside [0, 1]")
        if token.strip() in keys:
            values[keys.index(token.strip())] += prob
    mass = sum(values)
    if mass > 1.0 + MASS_TOLERANCE:
        raise ModPluralError(f"{source} gave the labels {', '.join(keys)} a total probability of {mass:.4g}, more than 1")
    if mass <= 0:
        return OptionResult(tuple(labels), tuple(1.0 / len(keys) for _ in keys), 0.0)
    return OptionResult(tuple(labels), tuple(v / mass for v in values), min(mass, 1.0))


class LogprobsError(ModPluralError):
    """A ``logprobs`` object that cannot be read; the message goes on from who sent it ("answered POST ... <message>")."""


def first_token_alternatives(logprobs: Any, where: str) -> dict[str, float]:
    """Token text -> probability of the first generated token's alternatives, from the OpenAI ``logprobs`` object
    found at ``where`` (named in errors): the chat format (``content[0].top_logprobs``, a list of ``{"token",
    "logprob", "bytes"}``) or the completions format (``top_logprobs[0]``, token -> logprob). Tokens with the same
    text add up. A missing or empty field, a token that is not text, a log-probability that is not a finite number
    <= 0, or alternatives worth more than probability 1 raise ``LogprobsError``.
    """
    chat = isinstance(logprobs, dict) and bool(logprobs.get("content"))
    field = f"{where}.content[0].top_logprobs" if chat else f"{where}.top_logprobs[0]"
    try:
        if chat:
            entries = [(e["token"], e["logprob"]) for e in logprobs["content"][0]["top_logprobs"]]
        else:
            entries = list(logprobs["top_logprobs"][0].items())
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LogprobsError(f"without {field} (does it support logprobs / top_logprobs?)") from None
    if not entries:
        raise LogprobsError(f"with an empty {field} (ask for top_logprobs alternatives, e.g. 20)")
    probs: dict[str, float] = {}
    for token, logprob in entries:
        prob = _probability(field, token, logprob)
        probs[token] = probs.get(token, 0.0) + prob
    total = sum(probs.values())
    if total > 1 + MASS_TOLERANCE:
        raise LogprobsError(f"with {field} whose probabilities add up to {total:.4g}, more than 1")
    return probs


def _probability(field: str, token: Any, logprob: Any) -> float:
    """exp(logprob) for one alternative; a token that is not text or a logprob that is not a finite number <= 0 is an error."""
    number = isinstance(logprob, (int, float)) and not isinstance(logprob, bool)
    if not isinstance(token, str) or not number or not math.isfinite(logprob) or logprob > LOGPROB_TOLERANCE:
        raise LogprobsError(f"with a bad {field} entry {token!r}: {logprob!r} (expected token text and a finite log-probability <= 0)")
    return math.exp(min(logprob, 0.0))


def likeliest(token_probs: dict[str, float], k: int) -> TopTokens:
    """The ``k`` likeliest tokens of a text -> probability table, likeliest first."""
    return sorted(token_probs.items(), key=lambda kv: -kv[1])[:k]


def read_top_tokens_original(labels: Sequence[str], top: Sequence[tuple[str, float]]) -> OptionResult:
    """The released scripts' reading of an answer from the top-k next tokens (``lm_utils.llm_response`` + the loop in
    ``ours_distributional.py``): tokens become a text -> probability dict in rank order (a later token decoding to the
    same text overwrites the value but keeps the first one's place); each label takes the value of the first key that
    equals it after stripping; no label found -> uniform (mass 0); else normalized."""
    table: dict[str, float] = {}
    for text, prob in top:
        table[text] = prob
    values = []
    for label in labels:
        values.append(next((prob for text, prob in table.items() if text.strip() == label), 0.0))
    mass = sum(values)
    if mass == 0:
        return OptionResult(tuple(labels), tuple(1.0 / len(labels) for _ in labels), 0.0)
    return OptionResult(tuple(labels), tuple(v / mass for v in values), mass)
