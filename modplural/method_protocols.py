"""What a method needs and which protocols it has a version of, by the method's name, without importing the methods:
a config is checked (and a finished run read) without the generation stack."""

from __future__ import annotations

from typing import Mapping

from modplural.errors import ModPluralError
from modplural.names import METHOD_NAMES
from modplural.protocol import Protocol, resolve_protocol

NEEDS_POOL = frozenset({"modular", "moe"})
USES_POOL = NEEDS_POOL | {"ethos"}  # ethos: the pool's communities are its fallback personas (no adapters needed)
COLLABORATIONS = frozenset({"modular", "ethos"})  # methods/modular.py's Collaboration: voices the main LLM aggregates
MIN_PERSPECTIVES = 2  # a steerable selection needs two messages to choose from
MAX_PERSPECTIVES = 9  # the selection reads the numbers 1..K as one-character labels


def check_method_protocol(name: str, protocol: Protocol) -> Protocol:
    """``protocol``, or a one-line error where method ``name`` has no version of it."""
    if name == "ethos":
        if protocol.ethos == "modplural" and protocol.prompts != "modplural":
            raise ModPluralError(f"method 'ethos' has its own perspective step in modplural prompts only (got prompts {protocol.prompts!r}): "
                                 "use protocol modplural, or ethos: released for EthosAgents' released steps")
        if protocol.weights == "learned":
            raise ModPluralError("method 'ethos' cannot learn community weights (its voices are generated anew for every query): use weights uniform")
    if name in COLLABORATIONS:
        if protocol.selection == "pointwise" and protocol.prompts != "modplural":
            raise ModPluralError("selection pointwise has no original wording (the released scripts select listwise): use prompts modplural")
        if protocol.calibration == "split" and protocol.weights == "learned":
            raise ModPluralError("calibration split and weights learned cannot be combined for Modular Pluralism (each is fitted on the "
                                 "calibration items through the other: the priors on the weighted mixture, the weights on calibrated answers); "
                                 "use one of them, or calibration content_free with weights learned")
    return protocol


def check_method(name: str, protocol: Protocol | str | Mapping | None = None) -> str:
    """``name`` if it is a method (with a version for ``protocol``, when given), else a one-line error."""
    if name not in METHOD_NAMES:
        raise ModPluralError(f"unknown method {name!r}: choose one of {', '.join(METHOD_NAMES)}")
    if protocol is not None:
        check_method_protocol(name, resolve_protocol(protocol))
    return name


def check_perspectives(k: int) -> int:
    """``k`` if it is a whole number of perspectives ethos can use, else a one-line error."""
    if not isinstance(k, int) or isinstance(k, bool) or not MIN_PERSPECTIVES <= k <= MAX_PERSPECTIVES:
        raise ModPluralError(f"ethos_perspectives must be a whole number from {MIN_PERSPECTIVES} to {MAX_PERSPECTIVES}, got {k!r}")
    return k
