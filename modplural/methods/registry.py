"""Methods by name: what experiments, the CLI and the Python API use to swap Modular Pluralism for a baseline."""

from __future__ import annotations

from typing import Mapping

from modplural.backends.base import Backend
from modplural.errors import ModPluralError
from modplural.methods.base import Method
from modplural.methods.baselines import MixtureOfExperts, Prompting, Vanilla
from modplural.methods.modular import ModularPluralism
from modplural.pool import CommunityPool
from modplural.protocol import Protocol

METHODS: dict[str, type[Method]] = {"modular": ModularPluralism, "vanilla": Vanilla, "prompting": Prompting, "moe": MixtureOfExperts}
NEEDS_POOL = frozenset({"modular", "moe"})


def check_method(name: str) -> str:
    """``name`` if it is a method, else a one-line error listing the methods."""
    if name not in METHODS:
        raise ModPluralError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return name


def build_method(name: str, main: Backend, pool: CommunityPool | None = None, protocol: Protocol | str | Mapping | None = None, seed: int = 0) -> Method:
    """``modular``, ``vanilla``, ``prompting`` or ``moe`` on the given main LLM (and community pool), under ``protocol``."""
    if check_method(name) in NEEDS_POOL:
        if pool is None:
            raise ModPluralError(f"method {name!r} needs a community pool")
        return METHODS[name](main, pool, protocol, seed)
    return METHODS[name](main, protocol, seed)
