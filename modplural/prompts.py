"""Every prompt modplural sends, in one place.

The wording follows Modular Pluralism's released code (Feng et al., EMNLP 2024) per task type. Framing that
depends on a dataset (a group such as "political party: Democrat", a country, a value) is passed in as text:

* ``attribute``: what the steerable selection must reflect, as a noun phrase completing "best reflect ...",
  e.g. ``"the value of Autonomy"`` or ``"the people of Democrat in terms of political party"``;
* ``persona``: an optional sentence put before the answering instruction, e.g.
  ``"In terms of political party, you are Democrat."`` or ``"You are from the country of Japan."``.

| step | template | original |
|---|---|---|
| community message, free text (Overton) | the query as it is | `generate_community_lm_msg.py` |
| community message, with options or steering | "Please respond to the following instruction with explanation." | same |
| Overton, main LLM | "Please comment on a given situation with the help of the following passages. Make sure to reflect diverse values and perspectives." | `ours_overton.py` |
| steerable selection | "Which of the following comments best reflect ...? ... Please select one comment number from 1 to K:" | `ours_steerable.py` |
| steerable / distributional answer | "... with the help of a passage. Passage: ..." | `ours_steerable.py`, `ours_distributional.py` |
| prompting baseline | "Make sure your response reflects diverse values and perspectives ..." and variants | `prompting_lm.py` |
| MoE baseline | "Please select an expert to help with the response. Expert 1: ..." | `moe_lm.py` |

Two changes from the original, both documented in README: options are answered by reading the option
labels' probabilities after ``ANSWER_PREFIX`` (not by a sampled 20-token answer), and the MoE experts are
described by the registry's one-line community descriptions.
"""

from __future__ import annotations

from typing import Sequence

ANSWER_PREFIX = "Answer:"
SELECTION_PREFIX = "Comment number:"
EXPERT_PREFIX = "Expert:"


def option_labels(n: int) -> tuple[str, ...]:
    """A, B, C, ... for ``n`` options."""
    return tuple(chr(ord("A") + i) for i in range(n))


def with_options(question: str, options: Sequence[str]) -> str:
    """The question, followed by lettered options unless it already lists every option text."""
    if all(option in question for option in options):
        return question.rstrip()
    listed = "\n".join(f"{label}. {option}" for label, option in zip(option_labels(len(options)), options))
    return f"{question.rstrip()}\n{listed}"


def _persona(persona: str | None) -> str:
    return f"{persona.strip()} " if persona else ""


def community_prompt(query: str, options: Sequence[str] | None = None, persona: str | None = None, explain: bool = False) -> str:
    """What a community LM is asked: the bare query (Overton), or a request to respond with explanation."""
    text = with_options(query, options) if options else query
    if options or explain or persona:
        return f"{_persona(persona)}Please respond to the following instruction with explanation. {text}"
    return text


def overton_main(query: str, passages: Sequence[str]) -> str:
    numbered = "".join(f"Passage {i}: {p}\n\n" for i, p in enumerate(passages, 1))
    return (
        "Please comment on a given situation with the help of the following passages. "
        "Make sure to reflect diverse values and perspectives.\n\n"
        f"Situation: {query}\n\n{numbered}Comment:"
    )


def steer_selection(attribute: str, comments: Sequence[str]) -> str:
    numbered = "".join(f"Comment {i}: {c}\n\n" for i, c in enumerate(comments, 1))
    return f"Which of the following comments best reflect {attribute}?\n\n{numbered}Please select one comment number from 1 to {len(comments)}."


def grounded_answer(query: str, passage: str, options: Sequence[str] | None = None, persona: str | None = None) -> str:
    """Answer the query (with its options) with the help of one community's passage."""
    text = with_options(query, options) if options else query
    return f"{_persona(persona)}Please respond to the following instruction with the help of a passage.\n\nPassage: {passage}\n\n{text}"


def plain_answer(query: str, options: Sequence[str] | None = None, persona: str | None = None) -> str:
    """Vanilla: the query itself (with its options, after an optional persona)."""
    text = with_options(query, options) if options else query
    return f"{_persona(persona)}{text}"


def prompting_answer(query: str, mode: str, options: Sequence[str] | None = None, attribute: str | None = None, persona: str | None = None) -> str:
    """The prompting baseline: the main LLM is asked to be pluralistic in the way the mode needs."""
    text = with_options(query, options) if options else query
    if mode == "overton":
        instruction = "Make sure your response reflects diverse values and perspectives for the following instruction."
    elif mode == "steer":
        instruction = f"Make sure your response reflects {attribute} in the following instruction."
    else:
        instruction = "Make sure your confidence scores reflect the real-world distributions of responses for the following instruction."
    return f"{_persona(persona)}{instruction} {text}"


def moe_selection(query: str, descriptions: Sequence[str]) -> str:
    experts = "".join(f"Expert {i}: {d}\n" for i, d in enumerate(descriptions, 1))
    return f"{query}\n\nPlease select an expert to help with the response.\n\n{experts}"
