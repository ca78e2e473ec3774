"""The community registry: which community LMs exist, what they stand for, how they speak.

``community_models/registry.yaml`` lists each community with a one-line description, the perspective axis it
sits on, and how it speaks: a LoRA ``adapter`` (a directory relative to the registry file, with the
``base_model`` it was trained on and its training ``corpus``), a ``persona`` (a system prompt, so a community
needs no training), or both. Each entry also has a default population weight. An adapter may name the ``hub``
repository it is published in; assembly fetches it into its directory when that is empty (``hub_adapters.py``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from modplural.config_files import from_mapping, read_yaml
from modplural.errors import ModPluralError
from modplural.validation import finite_float

REGISTRY_ENV = "MODPLURAL_REGISTRY"
MAX_DESCRIPTION_CHARS = 1000  # the shipped ones are at most 142
MAX_PERSONA_CHARS = 8000  # about 2,000 tokens: a persona rides on every request, within every model's context
DESCRIPTION_PERSONA = "You speak for this community: {description}"  # the persona made from a description
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Corpus:
    """Where a community's training text came from."""

    source: str
    licence: str
    url: str | None = None


@dataclass(frozen=True)
class Community:
    """One community LM: a LoRA adapter on a base model, a persona (system prompt) on any model, or both."""

    name: str
    description: str
    axis: str
    base_model: str | None = None  # required with an adapter; a persona-only entry may name the model it runs on
    adapter: Path | None = None
    corpus: Corpus | None = None  # the adapter's training text (required with an adapter)
    weight: float = 1.0
    persona: str | None = None  # sent as the system message before every request
    hub: str | None = None  # the hub repository (owner/name) the adapter is fetched from into ``adapter`` when that is empty

    @property
    def adapter_present(self) -> bool:
        return self.adapter is not None and (self.adapter / "adapter_config.json").is_file()

    def as_persona(self) -> "Community":
        """This community as a persona only (no adapter): its own persona, else one made from its description."""
        return dataclasses.replace(self, adapter=None, persona=self.persona or self.description_persona)

    @property
    def description_persona(self) -> str:
        """A system prompt made from the registry description alone (``DESCRIPTION_PERSONA``)."""
        return DESCRIPTION_PERSONA.format(description=self.description)


@dataclass(frozen=True)
class _RegistryFile:
    """A registry file's top level; each entry of ``communities`` is read as a ``Community``."""

    communities: tuple[Any, ...]
    version: int = 1


def find_community(communities: Sequence[Community], name: str, where: str) -> Community:
    """The community called ``name``, or an error listing what ``where`` has."""
    for community in communities:
        if community.name == name:
            return community
    raise ModPluralError(f"unknown community {name!r} ({where} has: {', '.join(c.name for c in communities) or 'none'})")


@dataclass(frozen=True)
class Registry:
    """A validated list of communities, looked up by name."""

    path: Path
    communities: tuple[Community, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.communities]

    def get(self, name: str) -> Community:
        return find_community(self.communities, name, f"registry {self.path}")

    def select(self, names: Sequence[str] | None = None) -> list[Community]:
        """The named communities in the given order, or all of them."""
        if names is None:
            return list(self.communities)
        if len(set(names)) != len(names):
            raise ModPluralError(f"community list has duplicates: {', '.join(names)}")
        return [self.get(n) for n in names]


def default_registry_path() -> Path:
    """``MODPLURAL_REGISTRY``, else the registry shipped in the source tree."""
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "community_models" / "registry.yaml"


def _parse_community(where: str, data: Any, root: Path) -> Community:
    """One registry entry; errors name ``where`` and, once it reads as one, the entry's name."""
    name = data.get("name") if isinstance(data, dict) else None
    named = f"{where} ({name})" if isinstance(name, str) and _NAME.fullmatch(name) else where
    community = from_mapping(Community, data, named)
    if not _NAME.fullmatch(community.name):
        raise ModPluralError(f"{where}: name {community.name!r} must be lower_snake_case")
    weight = finite_float(community.weight, f"{named}: weight")
    if weight < 0:
        raise ModPluralError(f"{named}: weight must be >= 0, got {community.weight}")
    persona = community.persona.strip() if community.persona is not None else None
    if persona == "":
        raise ModPluralError(f"{named}: persona is empty")
    if len(community.description) > MAX_DESCRIPTION_CHARS:
        raise ModPluralError(f"{named}: description is {len(community.description):,} characters, at most {MAX_DESCRIPTION_CHARS:,} "
                             "(one line: it names the community in selection prompts and makes its persona)")
    if persona is not None and len(persona) > MAX_PERSONA_CHARS:
        raise ModPluralError(f"{named}: persona is {len(persona):,} characters, at most {MAX_PERSONA_CHARS:,}: it is sent before every request "
                             "and must leave the model room for the question and its answer")
    adapter = community.adapter
    if adapter is None and persona is None:
        raise ModPluralError(f"{named}: needs an adapter, a persona, or both")
    if community.hub is not None and (adapter is None or not _HUB_ID.fullmatch(community.hub)):
        raise ModPluralError(f"{named}: hub must be a hub repository id (owner/name) beside an adapter directory to fetch it into, got {community.hub!r}")
    if adapter is not None:
        for field in ("base_model", "corpus"):
            if getattr(community, field) is None:
                raise ModPluralError(f"{named}: an adapter needs its {field} (missing field {field!r})")
        if "\0" in str(adapter):
            raise ModPluralError(f"{named}: adapter path contains a NUL character")
        adapter = (root / adapter).resolve()
    return dataclasses.replace(community, description=community.description.strip(), adapter=adapter, weight=weight, persona=persona)


def load_registry(path: str | Path | None = None) -> Registry:
    """Read and validate a registry file; every problem names the file, entry and field."""
    path = Path(path).expanduser() if path else default_registry_path()
    if not path.is_file():
        raise ModPluralError(f"community registry not found: {path} (set --registry or {REGISTRY_ENV})")
    entries = from_mapping(_RegistryFile, read_yaml(path, extends_key=None), str(path)).communities
    communities = tuple(_parse_community(f"{path}: community {i}", entry, path.parent) for i, entry in enumerate(entries))
    seen: set[str] = set()
    for c in communities:
        if c.name in seen:
            raise ModPluralError(f"{path}: community {c.name!r} is listed twice")
        seen.add(c.name)
    return Registry(path, communities)
