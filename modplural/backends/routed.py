"""One backend made of several: each adapter (community) is served by the backend that holds it."""

from __future__ import annotations

from typing import Mapping, Sequence

from dataclasses import replace

from modplural.backends.base import Backend, GenerateRequest, NextTokenRequest, OptionRequest, OptionResult, TopTokens
from modplural.errors import ModPluralError


class RoutedBackend:
    """Requests for adapter ``a`` go to ``routes[a] = (backend, name there)``; requests without one go to ``base``.

    This is how a pool mixes local and remote communities: results come back in request order. A route whose name
    there is None sends the request to that backend's base model (a persona-only community placed on a server).
    """

    engine = "routed"

    def __init__(self, routes: Mapping[str, tuple[Backend, str | None]], base: Backend) -> None:
        self.routes = dict(routes)
        self.base = base

    @property
    def adapters(self) -> list[str]:
        return list(self.routes)

    def _target(self, adapter: str | None) -> tuple[Backend, str | None]:
        if adapter is None:
            return self.base, None
        if adapter not in self.routes:
            raise ModPluralError(f"unknown adapter {adapter!r} (served: {', '.join(self.routes) or 'none'})")
        return self.routes[adapter]

    def adapter_identity(self, adapter: str | None) -> str:
        backend, name = self._target(adapter)
        return backend.adapter_identity(name)

    def _dispatch(self, requests: Sequence, call: str) -> list:
        groups: dict[int, tuple[Backend, list[int], list]] = {}
        for i, r in enumerate(requests):
            backend, name = self._target(r.adapter)
            groups.setdefault(id(backend), (backend, [], []))
            groups[id(backend)][1].append(i)
            groups[id(backend)][2].append(replace(r, adapter=name))
        out: list = [None] * len(requests)
        for backend, indices, routed in groups.values():
            if not hasattr(backend, call):
                raise ModPluralError(f"{type(backend).__name__} cannot serve {call} (needed by this protocol's answer reading)")
            for i, result in zip(indices, getattr(backend, call)(routed)):
                out[i] = result
        return out

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        return self._dispatch(requests, "generate")

    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        return self._dispatch(requests, "option_probs")

    def next_tokens(self, requests: Sequence[NextTokenRequest]) -> list[TopTokens]:
        return self._dispatch(requests, "next_tokens")
