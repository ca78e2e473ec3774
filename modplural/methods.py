"""Methods by name: what experiments and the CLI use to swap Modular Pluralism for a baseline."""

from __future__ import annotations

from typing import Mapping

from modplural.backends.base import Backend
from modplural.baselines import MixtureOfExperts, Prompting, Vanilla
from modplural.collaboration import ModularPluralism
from modplural.errors import ModPluralError
from modplural.method_base import Method
from modplural.pool import CommunityPool
from modplural.protocol import Protocol

METHODS = {"modular": ModularPluralism, "vanilla": Vanilla, "prompting": Prompting, "moe": MixtureOfExperts}
NEEDS_POOL = {"modular", "moe"}


def build_method(name: str, main: Backend, pool: CommunityPool | None = None, protocol: Protocol | str | Mapping | None = None, seed: int = 0) -> Method:
    """``modular``, ``vanilla``, ``prompting`` or ``moe`` on the given main LLM (and community pool), under ``protocol``."""
    if name not in METHODS:
        raise ModPluralError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    if name in NEEDS_POOL:
        if pool is None:
            raise ModPluralError(f"method {name!r} needs a community pool")
        return METHODS[name](main, pool, protocol, seed)
    return METHODS[name](main, protocol, seed)
