"""Repetition control over a row's own generated tokens (the prompt may still be quoted).

``frequency_penalty`` lowers each token's logit by the penalty times how often it was generated (the OpenAI API's
definition, which vLLM and llama.cpp servers also accept); ``no_repeat_ngram`` n bans every token that would
complete an n-gram already generated. Both local engines apply the same ``RepetitionControl``.
"""

from __future__ import annotations

from collections import Counter

from modplural.backends.base import Decoding


class RepetitionControl:
    """One row's generated tokens, and the logit changes they call for."""

    def __init__(self, decoding: Decoding) -> None:
        self.penalty, self.n = decoding.frequency_penalty, decoding.no_repeat_ngram
        self.tokens: list[int] = []
        self.counts: Counter[int] = Counter()
        self.followers: dict[tuple[int, ...], set[int]] = {}  # (n-1)-gram -> tokens generated after it

    @staticmethod
    def wanted(decoding: Decoding) -> bool:
        return decoding.frequency_penalty != 0 or decoding.no_repeat_ngram > 0

    def add(self, token: int) -> None:
        self.tokens.append(token)
        self.counts[token] += 1
        if self.n and len(self.tokens) >= self.n:
            self.followers.setdefault(tuple(self.tokens[-self.n : -1]), set()).add(token)

    def banned(self) -> set[int]:
        """Tokens that would repeat an n-gram."""
        if not self.n or len(self.tokens) < self.n - 1:
            return set()
        return self.followers.get(tuple(self.tokens[len(self.tokens) - self.n + 1 :]), set())

    def apply(self, logits) -> None:
        """Change one row's next-token logits (a 1-D tensor) in place."""
        import torch

        if self.penalty and self.counts:
            tokens = torch.tensor(list(self.counts), device=logits.device)
            counts = torch.tensor(list(self.counts.values()), dtype=logits.dtype, device=logits.device)
            logits[tokens] -= self.penalty * counts
        banned = self.banned()
        if banned:
            logits[torch.tensor(sorted(banned), device=logits.device)] = float("-inf")
