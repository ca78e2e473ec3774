"""The words every layer shares: a query, a method's result, and the modes. Tasks and methods both import these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from modplural.errors import ModPluralError

MODES = ("overton", "steer", "distribution")


@dataclass(frozen=True)
class Query:
    """One item for a method: the text, and what the mode needs besides it."""

    text: str
    options: tuple[str, ...] | None = None
    attribute: str | None = None  # steer: what to reflect, e.g. "the value of Autonomy"
    persona: str | None = None  # optional framing sentence, e.g. "You are from the country of Japan."
    weights: tuple[float, ...] | str | None = None  # distribution: None/'uniform', 'registry' or one per community
    situation: str | None = None  # Overton: the bare situation the main LLM comments on (the text may be an instruction)
    frame: tuple[str, ...] | None = None  # the dataset family, for protocol 'original' (see modplural/prompts/original.py)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ModPluralError("the query is empty")
        if self.options is not None:
            options = tuple(self.options)
            object.__setattr__(self, "options", options)
            if len(options) < 2:
                raise ModPluralError(f"need at least two options, got {len(options)}")
            if any(not isinstance(o, str) or not o.strip() for o in options):
                raise ModPluralError("options must be non-empty strings")
            if len({o.strip().lower() for o in options}) != len(options):
                raise ModPluralError(f"options must be distinct, got {list(options)}")
            if len(options) > 26:
                raise ModPluralError(f"at most 26 options are supported, got {len(options)}")
        if self.attribute is not None and not self.attribute.strip():
            raise ModPluralError("the attribute is empty")
        if isinstance(self.weights, list):
            object.__setattr__(self, "weights", tuple(self.weights))


@dataclass
class PluralResult:
    """What a method returns for one query; ``to_dict`` is what the CLI prints and the runner stores."""

    mode: str
    method: str
    query: str
    response: str | None = None
    options: list[str] | None = None
    distribution: list[float] | None = None
    option_mass: float | None = None  # raw main-LLM probability on the option labels (validity diagnostic)
    chosen_community: str | None = None
    selection_scores: dict[str, float] | None = None
    selection_mass: float | None = None  # raw main-LLM probability on the selection labels (exact selection)
    selection_text: str | None = None  # the sampled selection answer (selection_reading: sampled)
    community_messages: dict[str, str] = field(default_factory=dict)
    community_distributions: dict[str, list[float]] | None = None
    weights: dict[str, float] | None = None
    main_prompts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
