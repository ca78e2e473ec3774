"""The one place that builds the stack: a spec -> (main backend, community pool).

``modplural ask``, ``modplural run`` (the experiment runner), ``modplural communities``, the Python API
(``modplural.load``) and ``experiments/performance/benchmark.py`` all build their backends here, so the choices below are
made once.

Which main LLM answers (the first rule that applies):

1. ``model`` (``--model``, a config's ``main_model``): the user's explicit choice wins, loaded locally;
2. a servers file's ``main:``: that server's base model;
3. ``models.default_main_model()``: ``MODPLURAL_MAIN_MODEL``, else Qwen2.5-Coder-1.5B-Instruct (offline).

A locally loaded main LLM that is the communities' own local base model (``--model default`` with the shipped
communities: the all-SmolLM2 stack) shares their backend and its one copy of the weights. Any other is loaded
with ``main_weight_format`` (``auto``: int8 on a CPU in float32, ``backends.int8_weights``; float for SmolLM2-135M,
the shipped communities' base, so that ``--model default`` answers alike with every method); the communities' base
model always keeps float weights.

Communities a servers file lists run on their servers (a persona-only one on the server's base model); the rest
run on one local base model: the base the local adapters were trained on (persona-only entries may name it
too), else ``community_base`` or ``model``, else the embedded default. A persona-only community runs on that
base model with its persona as the system message.

``personas=True`` (the ``ethos`` method without adapter methods beside it) loads no adapters: the pool is the
registry communities as personas on the main LLM (``Community.as_persona``), ethos's fallback perspectives.

With ``cache`` on, community messages and the main LLM's answers go to one cache file: the pool's backend and the
main LLM are each wrapped in ``CachingBackend`` over that file (two wrappers, so each counts its own hits and misses,
around one backend where the main LLM is the communities' base model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from modplural.backends.base import Backend, Decoding
from modplural.backends.caching import CachingBackend
from modplural.backends.remote_config import Servers, load_servers
from modplural.communities import Community, load_registry
from modplural.errors import ModPluralError
from modplural.hub_adapters import fetch_missing
from modplural.message_cache import MessageCache
from modplural.names import check_engine
from modplural.methods.base import Method
from modplural.method_protocols import NEEDS_POOL, USES_POOL, check_method, check_perspectives
from modplural.methods.ethos import DEFAULT_PERSPECTIVES
from modplural.models import DEFAULT_MODEL, default_main_model, is_named
from modplural.methods.registry import build_method
from modplural.pool import MESSAGE_DECODING, CommunityPool
from modplural.protocol import Protocol, resolve_protocol
from modplural.validation import check_count



@dataclass(frozen=True)
class StackSpec:
    """What to build: the main LLM, the communities, and where and how they run."""

    model: str | None = None  # the main LLM (see the module docstring for who wins when it is None)
    communities: Sequence[str] | None = None  # registry names; None: every registry community
    registry: str | Path | None = None  # None: MODPLURAL_REGISTRY or the shipped registry
    servers: str | Path | None = None  # a servers file: communities and/or the main LLM on OpenAI-compatible servers
    engine: str = "batched"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | str = "auto"
    cache: bool | str | Path = True  # the cache of community messages and main-LLM answers: True (the default file), a file, or False
    decoding: Decoding = MESSAGE_DECODING  # community messages
    with_pool: bool = True  # False: no communities are loaded (methods that do not use them)
    personas: bool = False  # True: the communities as personas on the main LLM, no adapters loaded
    community_base: str | None = None  # load the local adapters onto this base instead of their registered one (same architecture)
    packed_weights: bool = True  # batched engine on a CPU in float32: oneDNN-prepacked linear weights (False: the plain kernel)
    main_weight_format: str = "auto"  # the main LLM's own weights: auto (int8 on a CPU in float32), float or int8
    with_main: bool = True  # False: no main LLM is built (callers that only use the community pool)


class Stack(NamedTuple):
    """The main LLM and the community pool (each None when the spec asked for none)."""

    main: Backend | None
    pool: CommunityPool | None


def local_backend(model: str, adapters: Mapping[str, str | Path] | None = None, engine: str = "batched", device: str = "auto",
                  dtype: str = "auto", batch_size: int | str = "auto", packed_weights: bool = True, weight_format: str = "float") -> Backend:
    """A local backend of the named engine with ``adapters`` loaded (torch is imported only here)."""
    check_engine(engine)
    if engine == "batched":
        from modplural.backends.local import LocalBackend

        return LocalBackend(model, adapters=adapters, device=device, dtype=dtype, batch_size=batch_size, packed_weights=packed_weights,
                            weight_format=weight_format)
    from modplural.backends.sequential import SequentialBackend

    return SequentialBackend(model, adapters=adapters, device=device, dtype=dtype, batch_size=batch_size, weight_format=weight_format)


def assemble(spec: StackSpec) -> Stack:
    """Build the main backend and the community pool ``spec`` describes."""
    check_engine(spec.engine)
    cache = None if spec.cache is False else MessageCache(None if spec.cache is True else spec.cache)
    servers = load_servers(spec.servers) if spec.servers else None
    clients: dict[str, Backend] = {}  # one HTTP backend per server, shared by its communities and the main LLM
    local: tuple[str, Backend] | None = None  # (base model spec, backend) of the locally served communities
    communities = load_registry(spec.registry).select(None if spec.communities is None else list(spec.communities)) if spec.with_pool else []
    if spec.with_pool and not communities:
        raise ModPluralError("the registry lists no communities")
    pool = None
    if communities and not spec.personas:
        backend, local, routed = _community_backend(communities, servers, clients, spec)
        pool = CommunityPool(_cached(backend, cache), communities, spec.decoding, routed)
    if not spec.with_main:
        return Stack(None, pool)
    if spec.model is None and servers is not None and servers.main is not None:
        main = _server_backend(servers, servers.main, clients)
    else:
        model = default_main_model() if spec.model is None else spec.model
        if local is not None and is_named(model, local[0]):
            main = local[1]
        else:
            main = local_backend(model, engine=spec.engine, device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size,
                                 packed_weights=spec.packed_weights, weight_format=_main_weight_format(model, spec.main_weight_format))
    if communities and spec.personas:
        pool = CommunityPool(_cached(main, cache), [c.as_persona() for c in communities], spec.decoding)
    return Stack(_cached(main, cache), pool)


def _cached(backend: Backend, cache: MessageCache | None) -> Backend:
    return backend if cache is None else CachingBackend(backend, cache)


def message_decoding(protocol: Protocol, seed: int = 0, tokens: int | None = None, temperature: float | None = None, top_p: float | None = None) -> Decoding:
    """The community messages' decoding under ``protocol`` (seeded), with any of its settings overridden."""
    return replace(MESSAGE_DECODING, max_new_tokens=tokens or protocol.message_tokens, seed=seed,
                   temperature=MESSAGE_DECODING.temperature if temperature is None else temperature,
                   top_p=MESSAGE_DECODING.top_p if top_p is None else top_p)


def load(method: str = "modular", *, protocol: Protocol | str | Mapping | None = "modplural", seed: int = 0, message_tokens: int | None = None,
         model: str | None = None, communities: Sequence[str] | None = None, registry: str | Path | None = None, servers: str | Path | None = None,
         engine: str = "batched", device: str = "auto", dtype: str = "auto", batch_size: int | str = "auto", cache: bool | str | Path = True,
         ethos_perspectives: int = DEFAULT_PERSPECTIVES, calibration: str | None = None, main_weight_format: str = "auto") -> Method:
    """A ready method: ``modplural.load()`` is Modular Pluralism with the default main LLM (Qwen2.5-Coder-1.5B-Instruct,
    int8 on a CPU) and every registry community (SmolLM2-135M adapters); ``load(model="default")`` is the all-SmolLM2 stack; ``modplural.load("vanilla", model=...)``, ``load(communities=[...], servers="servers.yaml")``,
    ``load("ethos", ethos_perspectives=3)``, ``load(calibration="content_free")`` (the protocol's switch) etc."""
    protocol = resolve_protocol(protocol if calibration is None else {"base": resolve_protocol(protocol), "calibration": calibration})
    check_method(method, protocol)
    check_perspectives(ethos_perspectives)
    communities = _community_names(communities)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ModPluralError(f"seed must be a whole number, got {seed!r}")
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise ModPluralError(f"cache must be true, false or a cache file path, got {type(cache).__name__} {cache!r}")
    if message_tokens is not None:
        check_count(message_tokens, "message_tokens")
    spec = StackSpec(model=model, communities=communities, registry=registry, servers=servers, engine=engine, device=device, dtype=dtype,
                     batch_size=batch_size, cache=cache, decoding=message_decoding(protocol, seed, message_tokens), with_pool=method in USES_POOL,
                     personas=method not in NEEDS_POOL, main_weight_format=main_weight_format)
    main, pool = assemble(spec)
    return build_method(method, main, pool, protocol, seed, ethos_perspectives=ethos_perspectives)


def _community_names(communities: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """None (every registry community), or the names asked for: one name as a string, or a non-empty list of names."""
    if communities is None:
        return None
    if isinstance(communities, str):
        communities = [communities]
    if not isinstance(communities, Sequence) or not all(isinstance(c, str) and c.strip() for c in communities):
        raise ModPluralError(f"communities must be a community name or a list of names, got {communities!r}")
    if not communities:
        raise ModPluralError("communities is empty: name at least one community, or pass None for every registry community")
    return tuple(communities)


def _community_backend(communities: list[Community], servers: Servers | None, clients: dict[str, Backend],
                       spec: StackSpec) -> tuple[Backend, tuple[str, Backend] | None, frozenset[str]]:
    """A backend serving every community (remote ones on their servers, the rest on one local base model), the local
    part as (base model spec, backend), if any, and the persona-only communities it routes by name (remote ones)."""
    remote = [c for c in communities if servers is not None and c.name in servers.communities]
    on_site = [c for c in communities if c not in remote]
    local = None
    if on_site:
        fetch_missing(on_site)
        base = spec.community_base or _common_base(on_site) or spec.model or "default"
        adapters = {c.name: c.adapter for c in on_site if c.adapter is not None}
        local = (base, local_backend(base, adapters, engine=spec.engine, device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size,
                                  packed_weights=spec.packed_weights))
    if not remote:
        return local[1], local, frozenset()
    from modplural.backends.routed import RoutedBackend

    routes: dict[str, tuple[Backend, str | None]] = {c.name: (local[1], c.name) for c in on_site if c.adapter is not None}
    for c in remote:
        entry = servers.communities[c.name]
        served_as = entry.adapter or (c.name if c.adapter is not None else None)  # persona-only: the server's base model
        routes[c.name] = (_server_backend(servers, entry.server, clients, {served_as: served_as} if served_as else None), served_as)
    base_backend = local[1] if local else _server_backend(servers, servers.main or servers.communities[remote[0].name].server, clients)
    return RoutedBackend(routes, base_backend), local, frozenset(c.name for c in remote if c.adapter is None)


def _main_weight_format(model: str, weight_format: str) -> str:
    """``auto`` keeps SmolLM2-135M (the shipped communities' base) in float, so ``--model default`` answers the same with
    any method, whether or not it shares the communities' backend; any other main LLM gets ``auto`` as it is."""
    return "float" if weight_format == "auto" and is_named(model, DEFAULT_MODEL) else weight_format


def _common_base(communities: list[Community]) -> str | None:
    """The one base model the communities name (their adapters were trained on it), or None when none names one."""
    bases = sorted({c.base_model for c in communities if c.base_model is not None})
    if len(bases) > 1:
        raise ModPluralError(f"communities are trained on different base models ({', '.join(bases)}); serve them from one base")
    return bases[0] if bases else None


def _server_backend(servers: Servers, name: str, clients: dict[str, Backend], adapters: Mapping[str, str] | None = None) -> Backend:
    """The named server's backend (built once per assembly), serving ``adapters`` (our name -> its name)."""
    from modplural.backends.openai_compat import OpenAIBackend

    if name not in clients:
        c = servers.servers[name]
        key = os.environ.get(c.api_key_env) if c.api_key_env else None
        if c.api_key_env and not key:
            raise ModPluralError(f"server {name!r}: environment variable {c.api_key_env} (its API key) is not set")
        clients[name] = OpenAIBackend(c.base_url, c.model, {}, style=c.style, api_key=key, tokenizer=c.tokenizer, max_concurrency=c.max_concurrency,
                                      timeout=c.timeout, retries=c.retries, backoff=c.backoff, top_logprobs=c.top_logprobs)
    clients[name].served.update(adapters or {})
    return clients[name]
