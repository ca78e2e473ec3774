"""The servers file: which OpenAI-compatible servers exist and which communities they serve (parsing only;
``modplural/assembly.py`` builds the backends).

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

Communities not listed stay local (adapters on a local base model). An explicit main model (``--model``,
``main_model``) wins over ``main:``.

Settings are checked as the file is read: ``base_url`` must be plain ``http(s)://`` without ``user:password@``,
``timeout`` in (0, 86400] seconds (each attempt's whole budget), ``backoff`` in [0, 60], ``retries`` in [0, 20]; an API
key already set in ``api_key_env`` must fit in an HTTP header. Errors name the file, the server and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from modplural.backends.openai_compat import check_api_key, check_base_url, check_settings
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

    def __post_init__(self) -> None:
        check_base_url(self.base_url)
        check_settings(self.timeout, self.retries, self.backoff, self.max_concurrency, self.top_logprobs)
        if self.api_key_env is not None and (not self.api_key_env or any(c in self.api_key_env for c in "=\0")):
            raise ModPluralError(f"field 'api_key_env' must name an environment variable, got {self.api_key_env!r}")


@dataclass(frozen=True)
class RemoteCommunity:
    server: str
    adapter: str | None = None


@dataclass(frozen=True)
class Servers:
    """A parsed servers file."""

    servers: dict[str, ServerConfig]
    communities: dict[str, RemoteCommunity] = field(default_factory=dict)
    main: str | None = None


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
        servers[str(name)] = config = from_mapping(ServerConfig, values, f"{path}: server {name!r}")
        if config.api_key_env and os.environ.get(config.api_key_env):
            check_api_key(os.environ[config.api_key_env], f"environment variable {config.api_key_env} (field 'api_key_env' of server {name!r} in {path})")
    communities = {}
    listed = data.get("communities") or {}
    if not isinstance(listed, dict):
        raise ModPluralError(f"{path}: 'communities' must map community names to a server name or settings, got {type(listed).__name__}")
    for name, values in listed.items():
        values = {"server": values} if isinstance(values, str) else values
        if not isinstance(values, dict):
            raise ModPluralError(f"{path}: community {name!r} must be a server name or a mapping")
        entry = from_mapping(RemoteCommunity, values, f"{path}: community {name!r}")
        if entry.server not in servers:
            raise ModPluralError(f"{path}: community {name!r} names unknown server {entry.server!r} (servers: {', '.join(servers)})")
        communities[str(name)] = entry
    main = data.get("main")
    if main is not None and not isinstance(main, str):
        raise ModPluralError(f"{path}: main must be the name of one of the servers, got {type(main).__name__}")
    if main is not None and main not in servers:
        raise ModPluralError(f"{path}: main names unknown server {main!r} (servers: {', '.join(servers)})")
    return Servers(servers, communities, main)
