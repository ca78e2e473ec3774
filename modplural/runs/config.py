"""An experiment's config: what to run (tasks x methods on one main model and community set), checked when it is
read, before any model loads or any run directory exists; and reading back what a run's manifest recorded.
Nothing here imports the generation stack."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from modplural.config_files import from_mapping, read_yaml
from modplural.errors import ModPluralError
from modplural.method_protocols import check_method, check_perspectives
from modplural.names import DEVICES, DTYPES, ETHOS_PERSPECTIVES, METHOD_NAMES, WEIGHT_FORMATS, check_engine
from modplural.protocol import Protocol, resolve_protocol
from modplural.runs.tracking import parse_tracking
from modplural.scorers import SCORERS
from modplural.tasks import TASKS
from modplural.validation import check_choice, check_count, finite_float, parse_batch_size

PRIMARY = "modular"
# Config fields that change how items are grouped into calls and batches, which kernel multiplies, or where the run is
# also tracked, not what is computed (every sampled request has its own seed; only the order of float summation moves),
# so a run may be resumed with other values, and a manifest written before one of them existed still matches.
HOW_FIELDS = ("chunk_size", "batch_size", "packed_weights", "track")
COMMUNITY_FORMS = ("adapters", "personas")


@dataclass(frozen=True)
class ExperimentConfig:
    """What to run: tasks x methods on one main model and community set."""

    name: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    main_model: str | None = None  # None: a servers file's main, else MODPLURAL_MAIN_MODEL or the offline 1.5B (modplural/assembly.py)
    main_weight_format: str = "auto"  # the main LLM's weights: auto (int8 on a CPU in float32), float or int8
    communities: tuple[str, ...] | None = None  # None: every registry community
    registry: str | None = None
    limit: int | None = None  # items per task
    sample: bool = False  # a seeded random sample of `limit` items instead of the first ones
    seed: int = 0
    batch_size: int | str = "auto"
    engine: str = "batched"  # or "sequential": the original's one-prompt-at-a-time pattern (for measurement)
    servers: str | None = None  # a servers YAML: communities (and the main LLM) on OpenAI-compatible servers
    chunk_size: int | str = "auto"  # items per batched method call (and per flush); auto: as many as fill one batch of community messages
    protocol: str | dict = "modplural"  # "original", "modplural", or {base: NAME, switch: value, ...}
    message_tokens: int | None = None  # None: the protocol's (200); a number overrides it (recorded in the protocol's name)
    message_temperature: float = 1.0
    message_top_p: float = 0.9
    main_tokens: int | None = None  # None: the protocol's (200); a number overrides main_tokens and steer_tokens
    scorer: str = "embedding"
    nli_model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    cache: bool = True
    ethos_perspectives: int = ETHOS_PERSPECTIVES  # the ethos method's perspectives per query
    calibration_items: int = 20  # calibration split / weights learned: items per task, outside the evaluated ones, to fit priors / weights on
    packed_weights: bool = True  # batched engine on a CPU in float32: oneDNN-prepacked linear weights (false: the plain kernel)
    communities_as: str = "adapters"  # or "personas": every community as its persona on the main LLM, no adapters loaded
    track: str | dict | None = None  # mlflow, or {kind: mlflow, uri: URI, experiment: NAME}: the run tracked in MLflow (modplural/tracking.py)

    def __post_init__(self) -> None:
        if not self.tasks or not self.methods:
            raise ModPluralError("a config needs at least one task and one method")
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", self.name):
            raise ModPluralError(f"name must be a plain name (letters, digits, '.', '_', '-'; it names the run directory runs/<name>), got {self.name!r}")
        if self.communities is not None and not self.communities:
            raise ModPluralError("communities is empty: name at least one community, or null for every registry community")
        for task in self.tasks:
            if task not in TASKS:
                raise ModPluralError(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
        for method in self.methods:
            if method not in METHOD_NAMES:
                raise ModPluralError(f"unknown method {method!r}: choose from {', '.join(METHOD_NAMES)}")
        if self.limit is not None and self.limit < 1:
            raise ModPluralError(f"limit must be at least 1, got {self.limit}")
        if self.chunk_size != "auto" and (type(self.chunk_size) is not int or self.chunk_size < 1):
            raise ModPluralError(f"chunk_size must be a positive integer or 'auto', got {self.chunk_size!r}")
        parse_batch_size(self.batch_size)
        if type(self.packed_weights) is not bool:
            raise ModPluralError(f"packed_weights must be true or false, got {self.packed_weights!r}")
        check_engine(self.engine)
        if self.scorer not in SCORERS:
            raise ModPluralError(f"unknown scorer {self.scorer!r}: choose {' or '.join(SCORERS)}")
        if self.message_tokens is not None:
            check_count(self.message_tokens, "message_tokens")
        if self.main_tokens is not None:
            check_count(self.main_tokens, "main_tokens")
        if finite_float(self.message_temperature, "message_temperature") < 0:
            raise ModPluralError(f"message_temperature must be >= 0, got {self.message_temperature}")
        if not 0 < finite_float(self.message_top_p, "message_top_p") <= 1:
            raise ModPluralError(f"message_top_p must be in (0, 1], got {self.message_top_p}")
        check_choice(self.device, DEVICES, "device")
        check_choice(self.dtype, DTYPES, "dtype")
        check_choice(self.main_weight_format, WEIGHT_FORMATS, "main_weight_format")
        check_choice(self.communities_as, COMMUNITY_FORMS, "communities_as")
        check_perspectives(self.ethos_perspectives)
        check_count(self.calibration_items, "calibration_items")
        parse_tracking(self.track)
        protocol = self.resolved_protocol()
        for method in self.methods:
            check_method(method, protocol)

    def resolved_protocol(self) -> Protocol:
        """The protocol with this config's token overrides folded in."""
        overrides: dict = {}
        if self.message_tokens is not None:
            overrides["message_tokens"] = self.message_tokens
        if self.main_tokens is not None:
            overrides["main_tokens"] = self.main_tokens
            if resolve_protocol(self.protocol).steer_tokens == resolve_protocol("modplural").steer_tokens:
                overrides["steer_tokens"] = self.main_tokens
        return resolve_protocol({"base": resolve_protocol(self.protocol), **overrides}) if overrides else resolve_protocol(self.protocol)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _without(config, fields: tuple[str, ...]):
    return {k: v for k, v in config.items() if k not in fields} if isinstance(config, dict) else config


def same_config(recorded, config: ExperimentConfig) -> bool:
    """Whether a manifest's config is ``config``, up to HOW_FIELDS; a field added since the run was recorded
    matches when ``config`` leaves it at its default (what the recorded run did)."""
    if not isinstance(recorded, dict):
        return False
    defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}
    current = {k: v for k, v in config.as_dict().items() if k in recorded or v != defaults.get(k)}
    return _without(recorded, HOW_FIELDS) == _without(current, HOW_FIELDS)


def load_config(path: Path, **overrides) -> ExperimentConfig:
    data = read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_mapping(ExperimentConfig, data, str(path))


def recorded_protocol(manifest: dict, where: str) -> Protocol | None:
    """The protocol a run's manifest recorded (a switch added since then has its original value; ``ethos``, added
    after ethos ran under modplural prompts, has the value such a run used: released under original prompts, where
    ethos could not run, else modplural), if any."""
    recorded = manifest.get("protocol")
    if recorded is None:  # recorded before protocols existed
        return None
    if not isinstance(recorded, dict):
        raise ModPluralError(f"{where}: 'protocol' must be an object of switches, got {type(recorded).__name__} {str(recorded)[:40]!r}")
    if "ethos" not in recorded:
        recorded = {**recorded, "ethos": "released" if recorded.get("prompts") == "original" else "modplural"}
    return from_mapping(Protocol, recorded, f"{where}: protocol")
