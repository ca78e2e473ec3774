"""Methods by name: what experiments and the CLI use to swap Modular Pluralism for a baseline."""

from __future__ import annotations

from modplural.backends.base import Backend, Decoding
from modplural.baselines import MixtureOfExperts, Prompting, Vanilla
from modplural.collaboration import ModularPluralism
from modplural.errors import ModPluralError
from modplural.method_base import MAIN_DECODING, Method
from modplural.pool import CommunityPool

METHODS = {"modular": ModularPluralism, "vanilla": Vanilla, "prompting": Prompting, "moe": MixtureOfExperts}
NEEDS_POOL = {"modular", "moe"}


def build_method(name: str, main: Backend, pool: CommunityPool | None = None, main_decoding: Decoding = MAIN_DECODING) -> Method:
    """``modular``, ``vanilla``, ``prompting`` or ``moe`` on the given main LLM (and community pool)."""
    if name not in METHODS:
        raise ModPluralError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    if name in NEEDS_POOL:
        if pool is None:
            raise ModPluralError(f"method {name!r} needs a community pool")
        return METHODS[name](main, pool, main_decoding)
    return METHODS[name](main, main_decoding)
