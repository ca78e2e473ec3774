"""Remote servers from a YAML file: which OpenAI-compatible servers exist and which communities they serve.

    servers:
      llama:
        base_url: http://127.0.0.1:8080/v1
        model: smollm2                 # the served base model
        style: auto                    # auto | model (vLLM) | llama.cpp
        api_key_env: MODPLURAL_API_KEY # optional: the API key is read from this variable
        tokenizer: default             # optional: render chat templates locally, use /v1/completions
        max_concurrency: 8
        timeout: 120
        retries: 3
    communities:                       # community -> server (and the server's adapter name; default: the community's)
      clinicians: {server: llama}
      patients: {server: llama, adapter: patients-v2}
    main: llama                        # optional: the main LLM is that server's base model

Communities not listed stay local (adapters on a local base model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from modplural.config_files import from_mapping, read_yaml
from modplural.errors import ModPluralError


@dataclass(frozen=True)
class ServerConfig:
    base_url: str
    model: str
    style: str = "auto"
    api_key_env: str | None = None
    tokenizer: str | None = None
    max_concurrency: int = 8
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 0.5
    top_logprobs: int = 20


@dataclass(frozen=True)
class RemoteCommunity:
    server: str
    adapter: str | None = None


@dataclass
class Servers:
    """Parsed servers file."""

    servers: dict[str, ServerConfig]
    communities: dict[str, RemoteCommunity] = field(default_factory=dict)
    main: str | None = None
    _built: dict = field(default_factory=dict, repr=False)

    def backend(self, name: str, adapters: dict[str, str] | None = None):
        """The server's backend (built once), serving ``adapters`` (our name -> its name)."""
        from modplural.backends.openai_compat import OpenAIBackend

        if name not in self._built:
            c = self.servers[name]
            key = os.environ.get(c.api_key_env) if c.api_key_env else None
            if c.api_key_env and not key:
                raise ModPluralError(f"server {name!r}: environment variable {c.api_key_env} (its API key) is not set")
            self._built[name] = OpenAIBackend(c.base_url, c.model, {}, style=c.style, api_key=key, tokenizer=c.tokenizer, max_concurrency=c.max_concurrency,
                                              timeout=c.timeout, retries=c.retries, backoff=c.backoff, top_logprobs=c.top_logprobs)
        backend = self._built[name]
        backend.served.update(adapters or {})
        return backend


def load_servers(path: str | Path) -> Servers:
    """Read and check a servers file; errors name the file and field."""
    path = Path(path)
    data = read_yaml(path, extends_key=None)
    unknown = set(data) - {"servers", "communities", "main"}
    if unknown:
        raise ModPluralError(f"{path}: unknown field(s) {', '.join(sorted(unknown))} (allowed: servers, communities, main)")
    raw_servers = data.get("servers")
    if not isinstance(raw_servers, dict) or not raw_servers:
        raise ModPluralError(f"{path}: 'servers' must map at least one server name to its settings")
    servers = {}
    for name, values in raw_servers.items():
        if not isinstance(values, dict):
            raise ModPluralError(f"{path}: server {name!r} must be a mapping")
        servers[str(name)] = from_mapping(ServerConfig, values, f"{path}: server {name!r}")
    communities = {}
    for name, values in (data.get("communities") or {}).items():
        values = {"server": values} if isinstance(values, str) else values
        if not isinstance(values, dict):
            raise ModPluralError(f"{path}: community {name!r} must be a server name or a mapping")
        entry = from_mapping(RemoteCommunity, values, f"{path}: community {name!r}")
        if entry.server not in servers:
            raise ModPluralError(f"{path}: community {name!r} names unknown server {entry.server!r} (servers: {', '.join(servers)})")
        communities[str(name)] = entry
    main = data.get("main")
    if main is not None and main not in servers:
        raise ModPluralError(f"{path}: main names unknown server {main!r} (servers: {', '.join(servers)})")
    return Servers(servers, communities, main)


def community_backend(communities: Sequence, servers: Servers | None, local_factory):
    """A backend serving every community: remote ones on their servers, the rest on ``local_factory(local_communities)``."""
    from modplural.backends.routed import RoutedBackend

    remote = [c for c in communities if servers is not None and c.name in servers.communities]
    if not remote:
        return local_factory(list(communities))
    local = [c for c in communities if c not in remote]
    local_backend = local_factory(local) if local else None
    routes = {}
    for c in remote:
        entry = servers.communities[c.name]
        served_as = entry.adapter or c.name
        routes[c.name] = (servers.backend(entry.server, {served_as: served_as}), served_as)
    for c in local:
        routes[c.name] = (local_backend, c.name)
    base = local_backend or servers.backend(servers.main or servers.communities[remote[0].name].server)
    return RoutedBackend(routes, base)
