"""Answers cached around any backend (as lm-eval's ``CachingLM`` wraps a model): the main LLM's answers and the
communities' messages (assembly wraps the pool's backend the same way), so rerunning a report or adding a method reads
finished ones back instead of recomputing them.

An answer is keyed by the identity of the weights that give it (for a local model also its device and dtype: the same
weights in bfloat16 give other numbers), every field of the request but the adapter name
(messages or prompt, answer prefix, labels, k, decoding with its seed) and the primitive that computes it. It is
stored as JSON in the cache file (``modplural/message_cache.py``) under a ``<primitive>:`` prefix.
A sampled request without a seed is never cached: each call is meant to draw anew.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable, Sequence

from modplural.backends.base import Backend, GenerateRequest, NextTokenRequest, OptionRequest, OptionResult, TokenScorer, TopTokens
from modplural.errors import ModPluralError
from modplural.message_cache import MessageCache, decoding_key, digest

Request = GenerateRequest | OptionRequest | NextTokenRequest


def answer_key(primitive: str, identity: str, request: Request) -> str | None:
    """``<primitive>:<sha256>``, or None for a sampled generation without a seed (never cached)."""
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request) if f.name != "adapter"}
    if isinstance(request, GenerateRequest):
        if not request.decoding.greedy and request.decoding.seed is None:
            return None
        fields["decoding"] = decoding_key(request.decoding)
    return f"{primitive}:{digest({'identity': identity, **fields})}"


def _numerics(backend: Backend, adapter: str | None) -> str:
    """``|device|dtype`` of the local model that serves ``adapter`` (through a router too), and ``|kernels`` where
    they are not the plain ones (prepacked weights round differently), else ``""`` (a server)."""
    while hasattr(backend, "routes") and hasattr(backend, "base"):  # RoutedBackend: the backend behind this adapter
        backend, adapter = backend.routes[adapter] if adapter is not None and adapter in backend.routes else (backend.base, None)
    loaded = getattr(backend, "loaded", None)
    if loaded is None:
        return ""
    kernels = getattr(backend, "kernels", "plain")
    return f"|{loaded.device}|{loaded.dtype}" + ("" if kernels == "plain" else f"|{kernels}")


class CachingBackend:
    """``inner`` with ``generate``, ``option_probs`` and (where ``inner`` has it) ``next_tokens`` answered from ``cache``.

    Everything else is ``inner``'s, and only what ``inner`` has: ``hasattr`` and ``isinstance`` checks against the
    optional protocols (``TopTokenBackend``, ``TokenScorer``) answer as they would for ``inner``.
    """

    def __init__(self, backend: Backend, cache: MessageCache) -> None:
        self.inner, self.cache = backend, cache
        self.hits = self.misses = 0  # requests read from the cache / computed by ``inner`` (a request repeated within one call counts once)
        if hasattr(backend, "next_tokens"):
            self.next_tokens = self._next_tokens
        if isinstance(backend, TokenScorer):  # token scoring is no answer: passed through, found without __getattr__
            self.tokenizer, self.token_nll = backend.tokenizer, backend.token_nll

    def __getattr__(self, name: str) -> Any:
        """The inner backend's attributes (``adapters``, ``loaded``, ``stats``, ...)."""
        if name.startswith("__") or "inner" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def adapter_identity(self, adapter: str | None) -> str:
        return self.inner.adapter_identity(adapter)

    def key(self, primitive: str, request: Request) -> str | None:
        """The cache key of ``request``'s answer (None: never cached)."""
        return answer_key(primitive, self.inner.adapter_identity(request.adapter) + _numerics(self.inner, request.adapter), request)

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        return self._answers("generate", requests, json.dumps, _generated)

    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        return self._answers("option_probs", requests, _dump_option_result, _option_result)

    def _next_tokens(self, requests: Sequence[NextTokenRequest]) -> list[TopTokens]:
        return self._answers("next_tokens", requests, _dump_top_tokens, _top_tokens)

    def _answers(self, primitive: str, requests: Sequence[Request], dump: Callable[[Any], str], load: Callable[[Any, Any], Any]) -> list:
        """Answers in request order: stored ones read back, the others computed in one inner call and stored."""
        requests = list(requests)
        keys = [self.key(primitive, r) for r in requests]
        stored = self.cache.get_many(list(dict.fromkeys(k for k in keys if k is not None)))
        out = [self._read(primitive, stored[k], load, r) if k in stored else None for k, r in zip(keys, requests)]
        first: dict[str, int] = {}
        run = [i for i, k in enumerate(keys) if k not in stored and (k is None or first.setdefault(k, i) == i)]
        self.hits += sum(k in stored for k in keys)
        self.misses += len(run)
        if run:
            results = getattr(self.inner, primitive)([requests[i] for i in run])
            fresh = {keys[i]: dump(result) for i, result in zip(run, results) if keys[i] is not None}
            self.cache.put_many(fresh)
            for i, result in zip(run, results):
                if keys[i] is None:
                    out[i] = result
            for i, k in enumerate(keys):
                if k in fresh:  # read back as a rerun will read it (one answer for repeated requests)
                    out[i] = load(json.loads(fresh[k]), requests[i])
        return out

    def _read(self, primitive: str, text: str, load: Callable[[Any, Any], Any], request: Request) -> Any:
        try:
            return load(json.loads(text), request)
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:  # a number beyond a float, deep nesting
            raise ModPluralError(f"message cache {self.cache.path}: a cached {primitive} answer does not read back ({type(exc).__name__}: {exc}); "
                                 "move the file away or use another cache file (--cache, MODPLURAL_CACHE) or --no-cache") from exc


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return float(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a text")
    return value


def _generated(value: Any, request: GenerateRequest) -> str:
    return _string(value)


def _dump_option_result(result: OptionResult) -> str:
    return json.dumps({"labels": list(result.labels), "probs": [float(p) for p in result.probs], "mass": float(result.mass), "unread": float(result.unread)})


def _option_result(value: Any, request: OptionRequest) -> OptionResult:
    labels, probs = tuple(value["labels"]), tuple(_number(p) for p in value["probs"])
    if labels != request.labels or len(probs) != len(labels):
        raise ValueError(f"labels {list(labels)} with {len(probs)} probabilities for the request's {list(request.labels)}")
    if any(p < 0 for p in probs) or not sum(probs) > 0:
        raise ValueError(f"probabilities {list(probs)} are negative or all zero")
    return OptionResult(labels, probs, _number(value["mass"]), _number(value["unread"]))


def _dump_top_tokens(top: TopTokens) -> str:
    return json.dumps([[token, float(p)] for token, p in top])


def _top_tokens(value: Any, request: NextTokenRequest) -> TopTokens:
    return [(_string(token), _number(p)) for token, p in value]
