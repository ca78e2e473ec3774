"""Wording both prompt protocols share: option letters, numbered passages, the Overton main prompt."""

from __future__ import annotations

from typing import Sequence


def option_labels(n: int) -> tuple[str, ...]:
    """A, B, C, ... for ``n`` options."""
    return tuple(chr(ord("A") + i) for i in range(n))


def numbered(kind: str, texts: Sequence[str]) -> str:
    """``Comment 1: ...\\n\\nComment 2: ...\\n\\n`` (the scripts' numbering of passages and comments)."""
    return "".join(f"{kind} {i}: {t}\n\n" for i, t in enumerate(texts, 1))


def overton_main(situation: str, passages: Sequence[str]) -> str:
    """The Overton main prompt; the same text in both protocols (``ours_overton.py``)."""
    return (
        "Please comment on a given situation with the help of the following passages. "
        "Make sure to reflect diverse values and perspectives.\n\n"
        f"Situation: {situation}\n\n{numbered('Passage', passages)}Comment:"
    )
