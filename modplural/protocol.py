"""Protocols: every deliberate difference from Modular Pluralism's released scripts is one named switch.

``original`` reproduces the released scripts (``BunsenFeng/modular_pluralism``) step for step; ``modplural`` is
our improved protocol. A config may name a protocol or start from one and flip single switches::

    protocol: original
    protocol: {base: original, answer_reading: exact}

``SWITCHES`` documents each switch (what the original does, in which file, what we do and why); docs/protocols.md's
fidelity table is written from it and ``experiments/results/fidelity/report.md`` holds the measured effects.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from modplural.errors import ModPluralError

CALIBRATIONS = ("none", "content_free", "split")  # modplural/calibration.py
WEIGHTINGS = ("uniform", "learned")  # modplural/learned_weights.py
SELECTIONS = ("listwise", "pointwise")  # methods/modular.py

SAMPLING_TOP_K = 50  # transformers' generate default, which the original scripts sample with; used by both protocols


@dataclass(frozen=True)
class Switch:
    """One documented difference: the original's behaviour (and its file), ours, and why."""

    original: str
    modplural: str
    why: str
    scoring: bool = False  # True: a scoring definition, re-scorable from stored predictions


SWITCHES: dict[str, Switch] = {
    "prompts": Switch(
        "the scripts' wording per dataset, e.g. OpinionQA 'Please respond to the following question with explanation.', GlobalOpinionQA "
        "'You are from the country of X, respond to ...', 'Sex', VK 'Please select one number', baselines without persona "
        "(`generate_community_lm_msg.py`, `ours_*.py`, `vanilla_lm.py`, `prompting_lm.py`, `moe_lm.py`)",
        "one wording for every dataset (`prompts/modplural.py`): the persona sentence before every instruction, options listed, "
        "every method (vanilla and MoE too) sees the task's persona",
        "one template per step instead of per file; every method gets the same information about the item",
    ),
    "main_input": Switch(
        "raw text: `tokenizer([prompt])`, no chat template (`lm_utils.py`)",
        "the main LLM's chat template; answer prefixes (`Answer:`) open the assistant turn, a trailing `Answer:` in the item text is dropped",
        "instruction-tuned main LLMs answer more often with a label inside their own template",
    ),
    "answer_reading": Switch(
        "a sampled 20-token answer, then the top-10 next tokens of the prompt; per option the first token equal to its letter "
        "after stripping; no letter among them -> uniform (`ours_distributional.py`, `lm_utils.py`)",
        "exact: every spelling of each label (a token that strips to it, also after whitespace-only tokens) by the chain rule over the full "
        "softmax; the mass on the labels is kept as a diagnostic",
        "the top-10 heuristic gives 0 to labels outside the top 10 and misses spellings such as ' 1' = 'Ġ'+'1'",
    ),
    "selection_reading": Switch(
        "a 20-token answer sampled at temperature 0.1; the first number 1..K found in it; none -> a random community (`ours_steerable.py`, `moe_lm.py`)",
        "exact label probabilities of the numbers 1..K; argmax; the distribution and its mass are kept",
        "no parsing failures, no random fallback, and the selection scores show how sure the main LLM was",
    ),
    "main_temperature": Switch(
        "0.1, sampled (`lm_utils.llm_response`)", "0 (greedy)", "deterministic main LLM outputs",
    ),
    "steer_tokens": Switch(
        "20 new tokens for a free-text steerable answer (`ours_steerable.py`, `vanilla_lm.py`)", "200, like every other free-text answer",
        "a steered free-text answer is a response, not a label (ValueKaleidoscope is read as a distribution here, see steerable_answer)",
    ),
    "steerable_answer": Switch(
        "ValueKaleidoscope steerable answers are 20 free-text tokens parsed into A/B/C (`answer_parsing`, then 'support'/'oppose'/"
        "'either' words; unparseable -> a class that is always wrong) (`evaluate_steerable_valuekaleidoscope.py`)",
        "a distribution over A/B/C read like every other option answer; the prediction is its argmax",
        "no parsing, and the same answer reading for every task",
    ),
    "repetition": Switch(
        "free-text answers decoded as they come (`lm_utils.py`): a small main LLM can loop on a phrase",
        "the main LLM's free-text answers never repeat a 4-gram of their own (`no_repeat_ngram` 4; the prompt can still be quoted; "
        "local engines only: an OpenAI-compatible server refuses it, so use `repetition: none` there)",
        "readable answers from small models without changing what they may quote",
    ),
    "message_trim": Switch(
        "community messages used as generated, often cut mid-sentence at 200 tokens (`generate_community_lm_msg.py`)",
        "each message trimmed to its last complete sentence (kept whole when it has none); the cache keeps the untrimmed text",
        "the main LLM is not grounded on half sentences",
    ),
    "calibration": Switch(
        "each answer distribution used as read (`ours_distributional.py`, `ours_steerable.py`, `moe_lm.py`)",
        "none as well (measured: experiments/results/calibration/); content_free: every option answer and selection divided by the "
        "model's distribution for the same prompt with the item's content replaced by 'N/A' (one prior per template and option count), "
        "renormalised; split: the prior is the mean raw distribution over calibration items disjoint from the evaluated ones; raw "
        "distributions and priors are kept in the predictions",
        "a small main LLM prefers one option letter whatever the question (contextual calibration, Zhao et al. 2021)",
    ),
    "weights": Switch(
        "distributional: the communities' answer distributions averaged with equal weights (`ours_distributional.py`)",
        "uniform as well; learned (modular only): one weight per community and a temperature fitted per task on calibration items "
        "disjoint from the evaluated ones (mean Jensen-Shannon distance to their gold distributions), stored with the run in weights.json",
        "communities are not equally informative on every task; the fit shows which ones carry the signal",
    ),
    "selection": Switch(
        "steerable: one listwise prompt numbering every community message, the main LLM names one (`ours_steerable.py`)",
        "listwise as well; pointwise (modular, ethos; modplural prompts): each message judged on its own ('Does this comment "
        "reflect ...? Yes/No'), the message with the highest probability of Yes is chosen; not calibrated (the messages of one query "
        "share their content-free prompt, so a prior could not change the pick)",
        "a small main LLM answers a numbered list by position; judging each message alone has no position to prefer",
    ),
    "ethos": Switch(
        "EthosAgents' released steps (Sam120204/Pluralistic-Alignment-for-Healthcare, `generate_*_comments*.py`; the `ethos` method only): "
        "six `#Name: Core Value, Ethical Framework, Right/Duty, Emotion, Stakeholder` perspectives sampled at temperature 1 (450 / 500 "
        "tokens), asked again until six parse (here at most 3 times, then the registry fills in below two), then one 150-180-word "
        "comment per perspective at temperature 1 (`modplural/prompts/ethos_released.py`); the scripts release no aggregation",
        "the main LLM lists `ethos_perspectives` numbered `name: stance` lines (greedy, parsed leniently), each perspective is the "
        "system prompt of a comment written like a community message; both aggregate the comments with Modular Pluralism's modes",
        "a small main LLM rarely writes six `#` lines; one list per query and comments sampled like community messages keep every item's panel",
    ),
    "single_option_items": Switch(
        "kept and scored (JS 0, correct) (`evaluate_distributions.py`)", "left out, listed in the manifest",
        "a one-option item says nothing about a method",
        scoring=True,
    ),
    "f1_labels": Switch(
        "macro-F1 over the labels present in gold or prediction (scikit-learn default) (`evaluate_steerable_valuekaleidoscope.py`)",
        "macro-F1 over the fixed labels (A, B, C; binary: A, B)", "the score does not jump when a bootstrap sample lacks a class",
        scoring=True,
    ),
    "binary_filter": Switch(
        "binary metrics drop items whose gold OR prediction is 'either' (`evaluate_steerable_valuekaleidoscope.py`)",
        "drop items whose gold is 'either' and predict the likelier of support / oppose",
        "the item set does not depend on the method being scored",
        scoring=True,
    ),
    "empty_response": Switch(
        "a response with no sentence scores -1 per value (`evaluate_overton_valuekaleidoscope.py`)", "scores 0",
        "coverage stays in [0, 1]",
        scoring=True,
    ),
}


@dataclass(frozen=True)
class Protocol:
    """The switches of one protocol, plus its decoding lengths (original: 200 tokens everywhere, 20 for short answers)."""

    name: str
    prompts: str
    main_input: str
    answer_reading: str
    selection_reading: str
    main_temperature: float
    steerable_answer: str
    single_option_items: str
    f1_labels: str
    binary_filter: str
    empty_response: float
    repetition: str = "none"
    message_trim: str = "none"
    calibration: str = "none"
    weights: str = "uniform"
    selection: str = "listwise"
    ethos: str = "modplural"  # the ethos method's steps; runs recorded before this switch ran modplural's (ORIGINAL: released)
    steer_tokens: int = 200  # free-text steerable answers (original: 20, ValueKaleidoscope's short answers)
    message_tokens: int = 200  # community messages (both: 200, sampled at temperature 1.0, top-p 0.9)
    main_tokens: int = 200  # Overton responses
    selection_tokens: int = 20  # sampled selections (steerable, and MoE before an option answer)
    expert_tokens: int = 5  # sampled MoE selections before a free-text answer

    def __post_init__(self) -> None:
        choices = {
            "prompts": ("original", "modplural"), "main_input": ("raw", "chat"), "answer_reading": ("top10", "exact"),
            "selection_reading": ("sampled", "exact"), "steerable_answer": ("parse", "distribution"),
            "single_option_items": ("keep", "drop"), "f1_labels": ("present", "fixed"), "binary_filter": ("gold_or_pred", "gold"),
            "repetition": ("none", "ngram4"), "message_trim": ("none", "sentence"), "calibration": CALIBRATIONS,
            "weights": WEIGHTINGS, "selection": SELECTIONS, "ethos": ("modplural", "released"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ModPluralError(f"protocol switch {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.main_temperature, (int, float)) or not math.isfinite(self.main_temperature) or self.main_temperature < 0:
            raise ModPluralError(f"protocol switch main_temperature must be a finite number >= 0, got {self.main_temperature!r}")
        if self.empty_response not in (-1, 0):
            raise ModPluralError(f"protocol switch empty_response must be -1 or 0, got {self.empty_response!r}")
        for name in ("steer_tokens", "message_tokens", "main_tokens", "selection_tokens", "expert_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModPluralError(f"protocol {name} must be a whole number >= 1, got {value!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: "Protocol") -> dict[str, tuple[Any, Any]]:
        """Switches (and lengths) whose values differ: name -> (this, other)."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in fields(self) if f.name != "name" and getattr(self, f.name) != getattr(other, f.name)}


ORIGINAL = Protocol(
    name="original", prompts="original", main_input="raw", answer_reading="top10", selection_reading="sampled", main_temperature=0.1,
    steerable_answer="parse", single_option_items="keep", f1_labels="present", binary_filter="gold_or_pred", empty_response=-1,
    steer_tokens=20, ethos="released",
)
MODPLURAL = Protocol(
    name="modplural", prompts="modplural", main_input="chat", answer_reading="exact", selection_reading="exact", main_temperature=0.0,
    steerable_answer="distribution", single_option_items="drop", f1_labels="fixed", binary_filter="gold", empty_response=0,
    repetition="ngram4", message_trim="sentence",
)
PROTOCOLS = {"original": ORIGINAL, "modplural": MODPLURAL}


def resolve_protocol(spec: str | Mapping[str, Any] | Protocol | None) -> Protocol:
    """A protocol by name, or ``{base: NAME, switch: value, ...}``; None means ``modplural``."""
    if isinstance(spec, Protocol):
        return spec
    if spec is None:
        return MODPLURAL
    if isinstance(spec, str):
        if spec not in PROTOCOLS:
            raise ModPluralError(f"unknown protocol {spec!r}: choose {' or '.join(PROTOCOLS)} (or a mapping with base: and switches)")
        return PROTOCOLS[spec]
    if not isinstance(spec, Mapping):
        raise ModPluralError(f"protocol must be a name or a mapping, got {type(spec).__name__}")
    overrides = dict(spec)
    base = resolve_protocol(overrides.pop("base", "modplural"))
    known = {f.name for f in fields(Protocol)} - {"name"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ModPluralError(f"unknown protocol switch {unknown[0]!r}: choose from {', '.join(sorted(known))}")
    if not overrides:
        return base
    label = base.name + "+" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    return replace(base, name=label, **overrides)
