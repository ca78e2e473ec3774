"""Every prompt modplural sends, one module per protocol (``protocol.prompts``).

* ``original``: the released scripts' wording, word for word, per dataset family (``Query.frame``).
* ``modplural``: one wording for every dataset, framing passed in as text (``Query.persona``, ``Query.attribute``).

Both modules offer the same functions over a ``Query``: ``community``, ``overton``, ``selection``, ``grounded``,
``vanilla``, ``prompting``, ``expert_selection``, ``expert_answer``, and ``ANSWER_PREFIX``. The ``ethos`` method's
``perspectives`` and ``perspective_persona``, and ``selection_pointwise`` (``selection: pointwise``), exist only in
``modplural`` (the released scripts have no such step).
"""

from __future__ import annotations

from types import ModuleType
from typing import Sequence

from modplural.errors import ModPluralError


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


def for_protocol(name: str) -> ModuleType:
    """The prompt module of ``protocol.prompts``."""
    from modplural.prompts import modplural, original

    modules = {"original": original, "modplural": modplural}
    if name not in modules:
        raise ModPluralError(f"unknown prompts {name!r}: choose original or modplural")
    return modules[name]
