"""The words every layer shares: a query, a method's result, and the modes. Tasks and methods both import these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from html import escape
from typing import Any, Iterable, Literal, get_args

from modplural.errors import ModPluralError
from modplural.validation import WEIGHT_NAMES, check_options, check_text, check_weights

Mode = Literal["overton", "steerable", "distributional"]
MODES: tuple[str, ...] = get_args(Mode)
MODE_ALIASES = {"steer": "steerable", "distribution": "distributional"}  # short names the CLI and run() also accept


def check_mode(mode: str) -> Mode:
    """The mode's name (an alias becomes its full name), or a one-line error listing the modes."""
    mode = MODE_ALIASES.get(mode, mode) if isinstance(mode, str) else mode
    if mode not in MODES:
        raise ModPluralError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class Query:
    """One item for a method: the text, and what the mode needs besides it."""

    text: str
    options: tuple[str, ...] | None = None
    attribute: str | None = None  # steerable: what to reflect, e.g. "the value of Autonomy"
    persona: str | None = None  # optional framing sentence, e.g. "You are from the country of Japan."
    weights: tuple[float, ...] | str | None = None  # distributional: None/'uniform', 'registry' or one per community
    situation: str | None = None  # the bare situation an item is about (Overton, ValueKaleidoscope; the text may be an instruction)
    frame: tuple[str, ...] | None = None  # the dataset family, for protocol 'original' (see modplural/prompts/original.py)

    def __post_init__(self) -> None:
        if not check_text(self.text, "the query").strip():
            raise ModPluralError("the query is empty")
        if self.options is not None:
            options = check_options(self.options)
            object.__setattr__(self, "options", options)
            if len(options) < 2:
                raise ModPluralError(f"need at least two options, got {len(options)}")
            if any(not check_text(o, f"option {i + 1}").strip() for i, o in enumerate(options)):
                raise ModPluralError("options must be non-empty strings")
            if len({o.strip().lower() for o in options}) != len(options):
                raise ModPluralError(f"options must be distinct, got {list(options)}")
            if len(options) > 26:
                raise ModPluralError(f"at most 26 options are supported, got {len(options)}")
        if self.attribute is not None and not check_text(self.attribute, "the attribute").strip():
            raise ModPluralError("the attribute is empty")
        if self.persona is not None:
            check_text(self.persona, "the persona")
        if self.situation is not None:
            check_text(self.situation, "the situation")
        if self.frame is not None:
            object.__setattr__(self, "frame", tuple(check_text(part, "the frame") for part in self.frame))
        if self.weights is not None and not (isinstance(self.weights, str) and self.weights in WEIGHT_NAMES):
            object.__setattr__(self, "weights", check_weights(self.weights))


QUERY_FIELDS = frozenset(f.name for f in fields(Query))


def query_from(value: str | dict) -> Query:
    """A query from a string or a dict of ``Query`` fields (what a LangChain runnable is given)."""
    if isinstance(value, str):
        return Query(value)
    if isinstance(value, dict) and "text" in value and set(value) <= QUERY_FIELDS:
        return Query(**value)
    raise ModPluralError(f"expected a query string or a dict with 'text' and any of {', '.join(sorted(QUERY_FIELDS))}, got {value!r}")


@dataclass
class PluralResult:
    """What a method returns for one query; ``to_dict`` is what the CLI prints and the runner stores."""

    mode: Mode
    method: str
    query: str
    response: str | None = None
    options: list[str] | None = None
    distribution: list[float] | None = None
    option_mass: float | None = None  # raw main-LLM probability on the option labels (validity diagnostic)
    chosen_community: str | None = None
    selection_scores: dict[str, float] | None = None  # listwise: the distribution over the messages; pointwise: each one's P(Yes)
    selection_mass: float | None = None  # raw main-LLM probability on the selection labels (exact selection)
    selection_text: str | None = None  # the sampled selection answer (selection_reading: sampled)
    raw_distribution: list[float] | None = None  # calibration on: the distribution as read, before dividing by the prior
    prior: list[float] | None = None  # calibration on: the answer prior (None: this label count had none)
    raw_selection_scores: dict[str, float] | None = None  # calibration on: the selection scores as read
    selection_prior: list[float] | None = None
    community_messages: dict[str, str] = field(default_factory=dict)
    community_distributions: dict[str, list[float]] | None = None
    weights: dict[str, float] | None = None
    temperature: float | None = None  # weights: learned: the fitted temperature the voices' distributions were sharpened with
    perspectives: list[dict[str, Any]] | None = None  # ethos: each voice's name, stance, persona and source (main LLM or registry); released: attempts
    main_prompts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        """A readable account: the community messages, the selection, then the answer."""
        lines = [f"mode: {self.mode}   method: {self.method}", ""]
        if self.perspectives:
            lines.append("Perspectives")
            lines += [f"  [{p['name']}] ({p['source']}) {' '.join(p['stance'].split())}" for p in self.perspectives]
            lines.append("")
        if self.community_messages:
            lines.append("Community messages")
            lines += [f"  [{name}] {' '.join(text.split())}" for name, text in self.community_messages.items()]
            lines.append("")
        if self.selection_scores:
            mass = f", probability mass on the numbers: {self.selection_mass:.2f}" if self.selection_mass is not None else ""
            lines.append(f"Selection (chosen: {self.chosen_community}{mass})")
            lines += [f"  {name:<24} {score:.3f}" for name, score in self.selection_scores.items()]
            lines.append("")
        elif self.selection_text is not None:
            lines += [f"Selection (chosen: {self.chosen_community}, read from the sampled answer {' '.join(self.selection_text.split())!r})", ""]
        if self.distribution is not None:
            lines.append("Answer distribution" + (f" (probability mass on the option labels: {self.option_mass:.2f})" if self.option_mass is not None else ""))
            lines += [f"  {p:6.1%} {'#' * round(p * 40):<40} {option}" for option, p in zip(self.options, self.distribution)]
        else:
            lines += ["Answer", self.response or ""]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The same account for notebooks: escaped text, distributions and selection scores as bars."""
        def bars(rows: Iterable[tuple[str, float]]) -> str:
            cells = "".join(f"<tr><td>{escape(label)}</td><td style='width:12em'><div style='background:#4a7fb5;height:0.8em;width:{100 * value:.1f}%'></div></td>"
                            f"<td>{value:.1%}</td></tr>" for label, value in rows)
            return f"<table>{cells}</table>"

        parts = [f"<div><b>{escape(self.mode)}</b> · {escape(self.method)} · <i>{escape(self.query)}</i>"]
        if self.community_messages:
            items = "".join(f"<li><b>{escape(name)}</b>{' (chosen)' if name == self.chosen_community else ''}: {escape(text)}</li>" for name, text in self.community_messages.items())
            parts.append(f"<details><summary>Community messages ({len(self.community_messages)})</summary><ul>{items}</ul></details>")
        if self.selection_scores:
            parts.append(f"<p>Selection: {escape(str(self.chosen_community))}</p>{bars(self.selection_scores.items())}")
        if self.distribution is not None:
            mass = f" (mass on the labels {self.option_mass:.2f})" if self.option_mass is not None else ""
            parts.append(f"<p>Answer distribution{mass}</p>{bars(zip(self.options, self.distribution))}")
        else:
            parts.append(f"<p style='white-space:pre-wrap'>{escape(self.response or '')}</p>")
        return "".join(parts) + "</div>"
