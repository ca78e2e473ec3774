"""The ``modplural`` protocol's prompts: one wording for every dataset, framing passed in as text.

Framing that depends on a dataset is a field of the ``Query``:

* ``attribute``: what the steerable selection must reflect, as a noun phrase completing "best reflect ...",
  e.g. ``"the value of Autonomy"`` or ``"the people of Democrat in terms of political party"``;
* ``persona``: an optional sentence put before every instruction, e.g. ``"You are from the country of Japan."``.

The steps follow the released scripts (``generate_community_lm_msg.py``, ``ours_*.py``, ``prompting_lm.py``,
``moe_lm.py``); where the wording differs from them is the ``prompts`` switch (``modplural/protocol.py``).
A trailing ``Answer:`` in the item text is dropped: the main LLM's answer prefix opens its own turn.

``perspectives`` and ``perspective_persona`` are the ``ethos`` method's own steps (``ethos: modplural``): they
follow EthosAgents' ``generate_overton_comments.py`` (Sam120204/Pluralistic-Alignment-for-Healthcare), asking
for a numbered list instead of its ``#Name: ...`` lines; its released steps word for word are ``ethos_released``.
"""

from __future__ import annotations

from typing import Sequence

from modplural.prompts.shared import numbered, option_labels, overton_main
from modplural.types import Mode, Query

ANSWER_PREFIX = "Answer:"
SELECTION_PREFIX = "Comment number:"
EXPERT_PREFIX = "Expert:"


def with_options(question: str, options: Sequence[str]) -> str:
    """The question, followed by lettered options unless it already lists every option text (identical options, as
    in a content-free query for calibration, are always listed)."""
    if len(set(options)) == len(options) and all(option in question for option in options):
        return question.rstrip()
    listed = "\n".join(f"{label}. {option}" for label, option in zip(option_labels(len(options)), options))
    return f"{question.rstrip()}\n{listed}"


def _body(q: Query) -> str:
    """The item text with its options, without a trailing ``Answer:`` (the answer prefix adds it once)."""
    text = with_options(q.text, q.options) if q.options else q.text.rstrip()
    if text.endswith(ANSWER_PREFIX):
        text = text[: -len(ANSWER_PREFIX)].rstrip()
    return text


def _persona(q: Query) -> str:
    return f"{q.persona.strip()} " if q.persona else ""


def community(q: Query, mode: Mode) -> str:
    """What a community LM is asked: the bare query (Overton), or a request to respond with explanation."""
    if mode == "overton" and not q.options and not q.persona:
        return q.text
    return f"{_persona(q)}Please respond to the following instruction with explanation. {_body(q)}"


def overton(q: Query, passages: Sequence[str]) -> str:
    return overton_main(q.situation or q.text, passages)


def selection(q: Query, comments: Sequence[str]) -> tuple[str, str]:
    """Which community message best reflects the attribute; read after ``Comment number:``."""
    text = f"Which of the following comments best reflect {q.attribute}?\n\n{numbered('Comment', comments)}Please select one comment number from 1 to {len(comments)}."
    return text, SELECTION_PREFIX


def selection_pointwise(q: Query, comment: str) -> str:
    """Pointwise selection (``selection: pointwise``): does this one message reflect the attribute; read as Yes / No
    after ``Answer:``. modplural's own step (the released scripts select listwise)."""
    return f"Does the following comment reflect {q.attribute}?\n\nComment: {comment}\n\nPlease answer Yes or No."


def grounded(q: Query, passage: str) -> str:
    """Answer the query (with its options) with the help of one community's passage."""
    return f"{_persona(q)}Please respond to the following instruction with the help of a passage.\n\nPassage: {passage}\n\n{_body(q)}"


def vanilla(q: Query) -> str:
    """The query itself (with its options, after an optional persona)."""
    return f"{_persona(q)}{_body(q)}"


def prompting(q: Query, mode: Mode) -> str:
    """The main LLM asked to be pluralistic in the way the mode needs."""
    if mode == "overton":
        instruction = "Make sure your response reflects diverse values and perspectives for the following instruction."
    elif mode == "steerable":
        instruction = f"Make sure your response reflects {q.attribute} in the following instruction."
    else:
        instruction = "Make sure your confidence scores reflect the real-world distributions of responses for the following instruction."
    return f"{_persona(q)}{instruction} {_body(q)}"


def expert_selection(q: Query, descriptions: Sequence[str]) -> tuple[str, str]:
    """MoE: pick one community by its registry description; read after ``Expert:``."""
    experts = "".join(f"Expert {i}: {d}\n" for i, d in enumerate(descriptions, 1))
    return f"{vanilla(q)}\n\nPlease select an expert to help with the response.\n\n{experts}", EXPERT_PREFIX


def expert_answer(q: Query, passage: str) -> str:
    return grounded(q, passage)


def perspectives(q: Query, k: int) -> str:
    """Ethos step 1: ``k`` contrasting perspectives on the query, one numbered ``name: stance`` line each."""
    return (
        f"{_persona(q)}Generate {k} contrasting perspectives on the following question. Each perspective must differ clearly in "
        "its core value, its ethical framework, the right or duty it emphasizes, and the stakeholder it speaks for.\n\n"
        f"Question: {q.situation if q.situation and not q.options else _body(q)}\n\n"
        f"Write exactly {k} lines, numbered 1 to {k}, each in this format and nothing else:\n1. <name>: <one-sentence stance>"
    )


def perspective_persona(perspective: str) -> str:
    """Ethos step 2: the system prompt of one generated perspective (``name: stance``)."""
    end = "" if perspective.endswith((".", "!", "?")) else "."
    return f"You speak from this perspective: {perspective}{end} Respond as someone who holds it, naming the values, rights or duties at stake."
