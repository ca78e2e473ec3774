"""Readable answers on small models (protocol modplural): repetition control in both engines, messages trimmed to sentences.

(On the real model: the parts that need none are in tests/unit/test_readability.py.)"""

from __future__ import annotations

from collections import Counter

import pytest

from modplural.backends import Decoding, GenerateRequest
from modplural.text import last_complete_sentence
from tests.helpers import run_cli

LOOPING = "Repeat after me forever: the sword cuts both ways, the sword cuts both ways, the sword cuts both ways,"


def _ngram_repeats(tokens: list[int], n: int) -> int:
    counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return max(counts.values(), default=0)


def test_both_engines_ban_repeated_ngrams_alike(backend):
    from modplural.assembly import local_backend

    reference = local_backend("default", engine="sequential", device="cpu", dtype="float32")
    plain = GenerateRequest(prompt=LOOPING, decoding=Decoding(max_new_tokens=40))
    controlled = GenerateRequest(prompt=LOOPING, decoding=Decoding(max_new_tokens=40, no_repeat_ngram=3, frequency_penalty=0.2))
    free, banned = backend.generate([plain, controlled])
    ids = lambda text: backend.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert _ngram_repeats(ids(free), 3) > 1  # the small model loops without control
    assert _ngram_repeats(ids(banned), 3) <= 1 and banned != free
    assert reference.generate([plain, controlled]) == [free, banned]  # greedy: the reference engine applies the same control


@pytest.mark.slow
def test_the_demo_answer_does_not_loop(tmp_path):
    """`make demo`: the default Overton answer repeats no 4-gram 3+ times and quotes no message cut mid-word."""
    import json

    question = "Should parents be allowed to refuse vaccines for their children?"
    result = run_cli("ask", question, "--json", "--cache", str(tmp_path / "messages.sqlite"))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    words = payload["response"].split()
    assert words and _ngram_repeats(words, 4) < 3
    for text in payload["community_messages"].values():
        assert last_complete_sentence(text) == text  # trimmed: every message ends a sentence (or is one)

