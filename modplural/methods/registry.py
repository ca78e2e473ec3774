"""Methods by name: what experiments, the CLI and the Python API use to swap Modular Pluralism for a baseline."""

from __future__ import annotations

from typing import Mapping

from modplural.backends.base import Backend
from modplural.errors import ModPluralError
from modplural.method_protocols import NEEDS_POOL, USES_POOL, check_method
from modplural.methods.base import Method
from modplural.methods.baselines import MixtureOfExperts, Prompting, Vanilla
from modplural.methods.ethos import DEFAULT_PERSPECTIVES, Ethos
from modplural.methods.modular import ModularPluralism
from modplural.pool import CommunityPool
from modplural.protocol import Protocol

METHODS: dict[str, type[Method]] = {"modular": ModularPluralism, "vanilla": Vanilla, "prompting": Prompting, "moe": MixtureOfExperts, "ethos": Ethos}
__all__ = ["METHODS", "NEEDS_POOL", "USES_POOL", "build_method", "check_method"]


def build_method(name: str, main: Backend, pool: CommunityPool | None = None, protocol: Protocol | str | Mapping | None = None, seed: int = 0,
                 ethos_perspectives: int = DEFAULT_PERSPECTIVES) -> Method:
    """A method by name on the given main LLM (and community pool), under ``protocol``."""
    if check_method(name) in NEEDS_POOL:
        if pool is None:
            raise ModPluralError(f"method {name!r} needs a community pool")
        return METHODS[name](main, pool, protocol, seed)
    if name == "ethos":
        return Ethos(main, pool, protocol, seed, ethos_perspectives)
    return METHODS[name](main, protocol, seed)
