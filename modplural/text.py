"""Sentences: the splitter the original evaluation uses, and trimming a text to its last complete sentence."""

from __future__ import annotations

import re
from functools import lru_cache

_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


@lru_cache(maxsize=1)
def _splitter():
    from sentence_splitter import SentenceSplitter

    return SentenceSplitter(language="en")


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, split by the ``sentence-splitter`` package as the original evaluation does."""
    return list(_splitter().split(text))


def ends_a_sentence(text: str) -> bool:
    """Whether ``text`` ends with . ! or ? (closing quotes and brackets allowed after it)."""
    return bool(_SENTENCE_END.search(text.rstrip()))


def last_complete_sentence(text: str) -> str:
    """``text`` without a last sentence that does not end in . ! or ? (the text is kept whole when it is one sentence)."""
    sentences = split_sentences(text)
    if len(sentences) < 2 or ends_a_sentence(sentences[-1]):
        return text
    # the splitter collapses runs of whitespace: find the last sentence's words with any whitespace between them
    tail = re.search(r"\s+".join(map(re.escape, sentences[-1].split())) + r"\s*$", text)
    return text[: tail.start()].rstrip() if tail and tail.start() > 0 else text


def terminal_safe(text: str) -> str:
    """``text`` for a terminal: control characters other than newline and tab (an escape sequence from a registry or a
    server reply could move the cursor, retitle the window or hide output) shown as ``\\x1b``-style escapes."""
    return "".join(ch if ch in "\n\t" or not (ord(ch) < 32 or 127 <= ord(ch) < 160) else f"\\x{ord(ch):02x}" for ch in text)
