"""A community pool: community LMs (adapters and/or personas on one backend) that write messages for queries,
batched and cached.

The pool receives its backend; ``modplural/assembly.py`` builds it, wrapped in ``CachingBackend`` when a message
cache is on (messages are then cached with the same wrapper and keys as the main LLM's answers). A community with
an adapter is addressed by its name (the backend serves its adapter under that name); a persona-only one runs on the backend's base model
(``adapter=None``), unless the pool lists it in ``routed`` (assembly does, for persona-only communities a
servers file places on a server: the routed backend sends them to that server's base model). A persona is the
system message before the user turn."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Sequence

from modplural.backends.base import Backend, Decoding, GenerateRequest
from modplural.backends.caching import CachingBackend
from modplural.communities import Community, find_community
from modplural.errors import ModPluralError
from modplural.protocol import SAMPLING_TOP_K
from modplural.validation import check_weights, normalise
from modplural.seeds import derived_seed

# Modular Pluralism samples community messages (temperature 1.0, top-p 0.9, transformers' top-k 50, 200 new tokens); ours are seeded.
MESSAGE_DECODING = Decoding(max_new_tokens=200, temperature=1.0, top_p=0.9, seed=0, top_k=SAMPLING_TOP_K)


@dataclass
class CommunityPool:
    """Communities served by ``backend`` (an adapter community's name is its adapter name there; a ``CachingBackend``
    serves stored messages and stores new ones)."""

    backend: Backend
    communities: list[Community]
    decoding: Decoding = MESSAGE_DECODING
    routed: frozenset[str] = frozenset()  # persona-only communities the backend routes by name (to a server's base model)
    generated: int = field(default=0, init=False)  # messages actually generated (not served from the cache)

    def __post_init__(self) -> None:
        if not self.communities:
            raise ModPluralError("a community pool needs at least one community")
        names = [c.name for c in self.communities]
        if len(set(names)) != len(names):
            raise ModPluralError(f"community pool has duplicates: {', '.join(names)}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.communities]

    def get(self, name: str) -> Community:
        return find_community(self.communities, name, "pool")

    def subset(self, names: Sequence[str]) -> "CommunityPool":
        """The same backend (and so the same cache) with only the named communities, in that order."""
        return CommunityPool(self.backend, [self.get(n) for n in names], self.decoding, self.routed)

    def resolve_weights(self, weights: Sequence[float] | str | None) -> list[float]:
        """Normalized weights: None or 'uniform' (the original's choice), 'registry', or one number per community."""
        if weights is None or weights == "uniform":
            raw, what = [1.0] * len(self.communities), "weights"
        elif weights == "registry":
            raw, what = [c.weight for c in self.communities], "registry weights"
        else:
            raw, what = weights, "weights"
        values = check_weights(raw, what)
        if len(values) != len(self.communities):
            raise ModPluralError(f"got {len(values)} weights for {len(self.communities)} communities ({', '.join(self.names)})")
        return normalise(values)

    def _adapter(self, community: Community) -> str | None:
        return community.name if community.adapter is not None or community.name in self.routed else None

    def request(self, community: Community, prompt: str) -> GenerateRequest:
        """``community``'s request for ``prompt``: its persona as the system turn, sampled with a seed from (seed, name, prompt).
        The community need not be one of the pool's: a persona-only one runs on the backend's base model."""
        decoding = self.decoding
        if not decoding.greedy:
            decoding = replace(decoding, seed=derived_seed(decoding.seed, community.name, prompt))
        persona = ({"role": "system", "content": community.persona},) if community.persona else ()
        return GenerateRequest(messages=(*persona, {"role": "user", "content": prompt}), adapter=self._adapter(community), decoding=decoding)

    def identity(self, name: str) -> str:
        """What writes ``name``'s messages: the backend's weights (with its adapter, if any), and a digest of its persona."""
        community = self.get(name)
        weights = self.backend.adapter_identity(self._adapter(community))
        return f"{weights}+persona:{hashlib.sha256(community.persona.encode()).hexdigest()[:16]}" if community.persona else weights

    def write(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """The texts of ``requests`` (from ``request``) in one batched call (a caching backend serves the stored ones)."""
        if not isinstance(self.backend, CachingBackend):
            self.generated += len(requests)
            return self.backend.generate(list(requests))
        before = self.backend.misses
        texts = self.backend.generate(requests)
        self.generated += self.backend.misses - before
        return texts

    def messages(self, prompts: Sequence[str], names: Sequence[str] | None = None) -> list[dict[str, str]]:
        """For each prompt, ``{community: message}`` from the named communities (default: all), in one batched call."""
        communities = [self.get(n) for n in names] if names is not None else self.communities
        jobs = [(i, c) for i in range(len(prompts)) for c in communities]
        texts = self.write([self.request(c, prompts[i]) for i, c in jobs])
        out: list[dict[str, str]] = [{} for _ in prompts]
        for (i, community), text in zip(jobs, texts):
            out[i][community.name] = text
        return out
