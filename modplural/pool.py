"""A community pool: community LMs (adapters on one backend) that write messages for queries, batched and cached.

The pool receives its backend; ``modplural/assembly.py`` builds it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Sequence

from modplural.backends.base import Backend, Decoding, GenerateRequest
from modplural.communities import Community, find_community
from modplural.errors import ModPluralError
from modplural.message_cache import MessageCache
from modplural.protocol import SAMPLING_TOP_K
from modplural.validation import check_weights, normalise

# Modular Pluralism samples community messages (temperature 1.0, top-p 0.9, transformers' top-k 50, 200 new tokens); ours are seeded.
MESSAGE_DECODING = Decoding(max_new_tokens=200, temperature=1.0, top_p=0.9, seed=0, top_k=SAMPLING_TOP_K)


@dataclass
class CommunityPool:
    """Communities served by ``backend`` (each community's name is its adapter name there)."""

    backend: Backend
    communities: list[Community]
    decoding: Decoding = MESSAGE_DECODING
    cache: MessageCache | None = None
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
        """The same backend and cache with only the named communities, in that order."""
        return CommunityPool(self.backend, [self.get(n) for n in names], self.decoding, self.cache)

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

    def _request(self, name: str, prompt: str) -> GenerateRequest:
        decoding = self.decoding
        if not decoding.greedy:
            seed_text = f"{decoding.seed}|{name}|{prompt}".encode()
            decoding = replace(decoding, seed=int(hashlib.sha256(seed_text).hexdigest()[:8], 16))
        return GenerateRequest(messages=({"role": "user", "content": prompt},), adapter=name, decoding=decoding)

    def messages(self, prompts: Sequence[str], names: Sequence[str] | None = None) -> list[dict[str, str]]:
        """For each prompt, ``{community: message}`` from the named communities (default: all), in one batched call."""
        names = list(names) if names is not None else self.names
        for name in names:
            self.get(name)
        jobs = [(i, name, self._request(name, prompt)) for i, prompt in enumerate(prompts) for name in names]
        keys = [MessageCache.key(self.backend.adapter_identity(name), request) for _, name, request in jobs]
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        missing = [j for j, key in enumerate(keys) if key not in cached]
        if missing:
            texts = self.backend.generate([jobs[j][2] for j in missing])
            fresh = {keys[j]: text for j, text in zip(missing, texts)}
            self.generated += len(missing)
            if self.cache is not None:
                self.cache.put_many(fresh)
            cached = {**cached, **fresh}
        out: list[dict[str, str]] = [{} for _ in prompts]
        for (i, name, _), key in zip(jobs, keys):
            out[i][name] = cached[key]
        return out
