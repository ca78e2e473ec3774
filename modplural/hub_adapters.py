"""Community adapters published on the Hugging Face hub: fetched into their registry directory before first use.

A registry entry with ``hub: owner/name`` keeps its ``adapter`` directory as where the files live; when that
directory has no adapter yet, the adapter's two files are downloaded into it (``HF_HUB_OFFLINE=1`` and a missing
repository are one-line errors). Nothing here runs for an adapter that is already there.
"""

from __future__ import annotations

from typing import Sequence

from modplural.backends.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from modplural.communities import Community
from modplural.errors import ModPluralError


def fetch_missing(communities: Sequence[Community]) -> None:
    """Download the adapter of every community that names a ``hub`` repository and has none on disk yet."""
    for community in communities:
        if community.hub is not None and community.adapter is not None and not community.adapter_present:
            _fetch(community)


def _fetch(community: Community) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id=community.hub, local_dir=str(community.adapter), allow_patterns=[ADAPTER_CONFIG, ADAPTER_WEIGHTS])
    except (OSError, ValueError) as exc:  # offline mode, no such repository, network errors
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModPluralError(f"community {community.name!r}: could not fetch its adapter {community.hub} from the hub into {community.adapter} ({detail}); "
                             "allow hub downloads (HF_HUB_OFFLINE=0) or put the adapter there") from exc
    if not community.adapter_present:
        raise ModPluralError(f"community {community.name!r}: hub repository {community.hub} has no {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} "
                             f"(a peft LoRA adapter in safetensors); convert it into {community.adapter}")
