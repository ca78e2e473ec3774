"""Every prompt modplural sends, one module per protocol (``protocol.prompts``).

* ``original``: the released scripts' wording, word for word, per dataset family (``Query.frame``).
* ``modplural``: one wording for every dataset, framing passed in as text (``Query.persona``, ``Query.attribute``).

Both modules offer the same functions over a ``Query``: ``community``, ``overton``, ``selection``, ``grounded``,
``vanilla``, ``prompting``, ``expert_selection``, ``expert_answer``, and ``ANSWER_PREFIX``. The ``ethos`` method's
``perspectives`` and ``perspective_persona``, and ``selection_pointwise`` (``selection: pointwise``), exist only in
``modplural``; EthosAgents' released perspective and comment prompts (``ethos: released``) are in ``ethos_released``.
Wording both protocols share is in ``shared``.
"""

from __future__ import annotations

from types import ModuleType

from modplural.errors import ModPluralError
from modplural.prompts.shared import numbered, option_labels, overton_main

__all__ = ["for_protocol", "numbered", "option_labels", "overton_main"]


def for_protocol(name: str) -> ModuleType:
    """The prompt module of ``protocol.prompts``."""
    from modplural.prompts import modplural, original

    modules = {"original": original, "modplural": modplural}
    if name not in modules:
        raise ModPluralError(f"unknown prompts {name!r}: choose original or modplural")
    return modules[name]
