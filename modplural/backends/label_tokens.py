"""Which vocabulary tokens spell an option label (``A``, `` A``, ``▁A`` ...), which tokens are only whitespace
(so that two-token spellings such as ``Ġ`` + ``1`` or ``Ċ`` + ``A`` can be followed), and the original
scripts' top-10 reading."""

from __future__ import annotations

from typing import Sequence

from modplural.backends.base import OptionResult
from modplural.errors import ModPluralError

_MAX_LABEL_CHARS = 16
MASS_TOLERANCE = 1e-3  # probability above 1 that is float rounding (top-k softmax, JSON round trips)


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
