"""The ``original`` protocol's prompts: the wording of Modular Pluralism's released scripts, word for word.

The scripts word each dataset family differently; a task says which family its items belong to in
``Query.frame`` (data about the item, not about a method):

* ``("value", VALUE)``: steerable ValueKaleidoscope (item text = the ``input`` field, ending in ``Answer:``);
* ``("group", CATEGORY_CODE, VALUE)``: steerable OpinionQA (``POLPARTY``, ``Democrat``);
* ``("country", COUNTRY)``: distributional GlobalOpinionQA;
* ``("choice",)``: distributional MoralChoice;
* no frame: Overton (item text = ``input``, ``Query.situation`` = the bare situation).

Sources (BunsenFeng/modular_pluralism): community messages ``generate_community_lm_msg.py``; Overton
``ours_overton.py``; selection and steered answers ``ours_steerable.py``; distributional answers
``ours_distributional.py``; baselines ``vanilla_lm.py``, ``prompting_lm.py``, ``moe_lm.py``. The item text
already ends in ``Answer:`` where the scripts read an answer, so nothing is appended (``ANSWER_PREFIX``).
"""

from __future__ import annotations

from typing import Sequence

from modplural.errors import ModPluralError
from modplural.prompts.shared import numbered, overton_main
from modplural.types import Mode, Query

ANSWER_PREFIX = ""
# the scripts' opinionqa_attribute_category_map, with its capital "Sex"
CATEGORIES = {
    "POLPARTY": "political party", "POLIDEOLOGY": "political ideology", "RELIG": "religion", "RACE": "race",
    "EDUCATION": "education", "INCOME": "income", "CREGION": "region in the United States", "SEX": "Sex",
}


def _family(q: Query) -> str:
    return q.frame[0] if q.frame else "free"


def _group(q: Query) -> tuple[str, str]:
    code, value = q.frame[1], q.frame[2]
    if code not in CATEGORIES:
        raise ModPluralError(f"the original scripts have no wording for the OpinionQA category {code!r}")
    return CATEGORIES[code], value


def community(q: Query, mode: Mode) -> str:
    """``generate_community_lm_msg.py``: the bare input for Overton; per family for the other tasks."""
    family = _family(q)
    if family == "group":
        category, value = _group(q)
        return f"In terms of {category}, you are {value}. Please respond to the following question with explanation. {q.text}"
    if family == "country":
        return f"You are from the country of {q.frame[1]}, respond to the following instruction with explanation. {q.text}"
    if family == "choice":
        return f"Please respond to the following question with explanation. {q.text}"
    if family == "value" or mode != "overton":
        return f"Please respond to the following instruction with explanation. {q.text}"
    return q.text


def overton(q: Query, passages: Sequence[str]) -> str:
    """``ours_overton.py``: the bare situation, then the numbered passages."""
    return overton_main(q.situation or q.text, passages)


def selection(q: Query, comments: Sequence[str]) -> tuple[str, str]:
    """``ours_steerable.py``: OpinionQA asks for a "comment number", ValueKaleidoscope for a "number"."""
    if _family(q) == "group":
        category, value = _group(q)
        head, tail = f"the people of {value} in terms of {category}", "Please select one comment number from 1 to"
    elif _family(q) == "value":
        head, tail = f"the value of {q.frame[1]}", "Please select one number from 1 to"
    else:
        head, tail = q.attribute, "Please select one comment number from 1 to"
    return f"Which of the following comments best reflect {head}?\n\n{numbered('Comment', comments)}{tail} {len(comments)}:", ""


def grounded(q: Query, passage: str) -> str:
    """The answer with one community's message: ``ours_steerable.py`` (group, value), ``ours_distributional.py`` (country, choice)."""
    family = _family(q)
    if family == "group":
        category, value = _group(q)
        return f"In terms of {category}, you are {value}. Please respond to the following question with the help of a passage.\n\nPassage: {passage}\n\n{q.text}"
    if family == "value":
        return f"Answer the question with the help of a passage. Passage: {passage}\n\n{q.text}"
    if family == "country":
        return f"You are from the country of {q.frame[1]}, respond to the following instruction with the help of a passage.\n\nPassage: {passage}\n\n{q.text}"
    return f"Please respond to the following instruction with the help of a passage.\n\nPassage: {passage}\n\n{q.text}"


def vanilla(q: Query) -> str:
    """``vanilla_lm.py``: the item text alone (no persona)."""
    return q.text


def prompting(q: Query, mode: Mode) -> str:
    """``prompting_lm.py``."""
    family = _family(q)
    if family == "group":
        category, value = _group(q)
        return f"In terms of {category}, you are {value}. {q.text}"
    if family == "country":
        return f"You are from the country of {q.frame[1]}, respond to the following instruction. {q.text}"
    if family == "value":
        return f"Make sure your response reflects the specified value, right, or duty in the following instruction. {q.text}"
    if family == "choice" or mode == "distributional":
        return f"Make sure your confidence scores reflect the real-world distributions of responses for the following instruction. {q.text}"
    return f"Make sure your response reflects diverse values and perspectives for the following instruction. {q.text}"


def expert_selection(q: Query, descriptions: Sequence[str]) -> tuple[str, str]:
    """``moe_lm.py``: the item text, then the experts (the registry's descriptions stand for its six fixed ones)."""
    experts = "".join(f"Expert {i}: {d}\n" for i, d in enumerate(descriptions, 1))
    return f"{q.text}\n\nPlease select an expert to help with the response.\n\n{experts}\nExpert:", ""


def expert_answer(q: Query, passage: str) -> str:
    """``moe_lm.py``: the chosen expert's message, then the item text."""
    return f"Passage: {passage}\n\n{q.text}"
