"""Which vocabulary tokens spell an option label (``A``, `` A``, ``▁A``, ``\\nA`` ...)."""

from __future__ import annotations

from typing import Sequence

from modplural.errors import ModPluralError

_MAX_LABEL_CHARS = 16


class LabelTokens:
    """Index of a tokenizer's vocabulary by decoded, whitespace-stripped text.

    A label's variants are every single token whose decoded text, stripped of whitespace, equals the
    label. Summing their probabilities is what "the model answers with this label" means for the next token.
    """

    def __init__(self, tokenizer) -> None:
        self._by_text: dict[str, list[int]] = {}
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        size = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(size)], clean_up_tokenization_spaces=False)
        for token_id, text in enumerate(texts):
            key = text.strip()
            if token_id in special or not key or len(key) > _MAX_LABEL_CHARS:
                continue
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
