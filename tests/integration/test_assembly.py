"""One assembly point: which main LLM answers, which backends are shared, and nothing else builds a backend.

(On the real model: the parts that need none are in tests/unit/test_assembly.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modplural.assembly import StackSpec, assemble
from modplural.backends import Decoding
from modplural.errors import ModPluralError
from tests.helpers import write_registry


def _with_personas(registry: Path, *names: str) -> Path:
    data = yaml.safe_load(registry.read_text())
    data["communities"] += [{"name": n, "description": f"{n} people", "axis": "test", "persona": f"You speak for {n}."} for n in names]
    registry.write_text(yaml.safe_dump(data))
    return registry


def test_main_llm_precedence(tmp_path, adapter_dirs):
    """--model / main_model (explicit) > a servers file's main: > MODPLURAL_MAIN_MODEL (the tests set it to 'default'); a
    main LLM that is the communities' base model shares their backend."""
    from modplural.backends.caching import CachingBackend
    from modplural.backends.local import LocalBackend
    from modplural.backends.openai_compat import OpenAIBackend

    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    servers = tmp_path / "servers.yaml"
    servers.write_text("servers:\n  hosted: {base_url: 'http://127.0.0.1:9/v1', model: m}\nmain: hosted\n")
    common = {"registry": registry, "device": "cpu", "dtype": "float32", "cache": False}

    main, pool = assemble(StackSpec(servers=servers, **common))
    assert isinstance(main, OpenAIBackend) and main.base_url == "http://127.0.0.1:9/v1"
    assert isinstance(pool.backend, LocalBackend) and set(pool.backend.adapters) == {"alpha", "beta"}  # not listed: local

    main, pool = assemble(StackSpec(model="default", servers=servers, **common))
    assert main is pool.backend  # the explicit choice wins; it names the communities' base, so the weights are shared

    main, pool = assemble(StackSpec(**common))
    assert main is pool.backend and main.adapter_identity(None) == pool.backend.adapter_identity(None)
    main, pool = assemble(StackSpec(model="smollm2-135m-instruct", **common))  # the same model by its other name
    assert main is pool.backend

    main, pool = assemble(StackSpec(with_pool=False, **common))
    assert pool is None and isinstance(main, LocalBackend) and main.adapters == []
    assert main.loaded.weight_format == "float"  # auto keeps SmolLM2 in float: --model default answers alike with any method
    main, _ = assemble(StackSpec(with_pool=False, main_weight_format="int8", **common))
    assert main.kernels == "int8-rowwise-v1" and main.adapter_identity(None).endswith("#int8-rowwise-v1")

    # with the cache on, the main LLM and the pool are the same backend, each behind its own wrapper over one cache file
    main, pool = assemble(StackSpec(**{**common, "cache": tmp_path / "cache.sqlite"}))
    assert isinstance(main, CachingBackend) and isinstance(pool.backend, CachingBackend) and main is not pool.backend
    assert main.inner is pool.backend.inner and main.cache is pool.backend.cache
    assert main.adapter_identity(None) == pool.backend.adapter_identity(None)  # what the run manifest records
    main, pool = assemble(StackSpec(with_pool=False, **{**common, "cache": tmp_path / "cache.sqlite"}))
    assert pool is None and isinstance(main, CachingBackend) and isinstance(main.inner, LocalBackend)


def test_persona_communities_run_on_the_local_base_or_their_server(tmp_path, adapter_dirs):
    """Routing: a persona-only community a servers file does not list runs on the local base model (adapter None);
    one it lists is routed by name to that server's base model; adapters are loaded only for communities that have one."""
    registry = _with_personas(write_registry(tmp_path / "registry.yaml", adapter_dirs), "nurses", "carers")
    servers = tmp_path / "servers.yaml"
    servers.write_text("servers:\n  hosted: {base_url: 'http://127.0.0.1:9/v1', model: m}\ncommunities:\n  carers: {server: hosted}\n")
    main, pool = assemble(StackSpec(registry=registry, servers=servers, device="cpu", dtype="float32", cache=False, decoding=Decoding(max_new_tokens=3)))
    local, server = pool.backend.base, pool.backend.routes["carers"][0]
    assert main is local and pool.routed == {"carers"} and local.adapters == ["alpha", "beta"] and server.served == {}
    requests = {name: pool.request(pool.get(name), "Is rest enough?") for name in pool.names}
    assert [requests[n].adapter for n in pool.names] == ["alpha", "beta", None, "carers"]
    assert pool.backend.adapter_identity(requests["nurses"].adapter) == local.adapter_identity(None)
    assert pool.backend.adapter_identity(requests["carers"].adapter) == "http://127.0.0.1:9/v1|m" == server.adapter_identity(None)
    sent = []
    server.generate = lambda rows: sent.extend(rows) or ["from the server"] * len(rows)
    [messages] = pool.messages(["Is rest enough?"], ["nurses", "carers"])
    assert messages["carers"] == "from the server" and messages["nurses"] and messages["nurses"] != "from the server"
    assert [(r.adapter, r.messages[0]) for r in sent] == [(None, {"role": "system", "content": "You speak for carers."})]


def test_a_persona_only_registry_runs_on_the_main_model(tmp_path):
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({"communities": []}))
    registry = _with_personas(registry, "nurses", "carers")
    main, pool = assemble(StackSpec(registry=registry, device="cpu", dtype="float32", cache=False))
    assert main is pool.backend and main.adapters == [] and pool.routed == frozenset()
    assert [pool.request(c, "q").adapter for c in pool.communities] == [None, None]


def test_unknown_engine_and_mixed_bases_are_one_line_errors(tmp_path, adapter_dirs):
    with pytest.raises(ModPluralError, match="unknown engine 'turbo': choose batched or sequential"):
        assemble(StackSpec(engine="turbo", with_pool=False))
    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    registry.write_text(registry.read_text().replace("base_model: default", "base_model: other", 1))
    with pytest.raises(ModPluralError, match="different base models"):
        assemble(StackSpec(registry=registry, cache=False))


def test_load_is_a_ready_method_in_one_line(tmp_path, adapter_dirs):
    import modplural
    from modplural.methods import ModularPluralism, Vanilla

    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    short = {"base": "modplural", "main_tokens": 6}
    mp = modplural.load(registry=registry, protocol=short, message_tokens=6, cache=False, device="cpu", dtype="float32")
    assert isinstance(mp, ModularPluralism) and mp.pool.names == ["alpha", "beta"] and mp.main is mp.pool.backend
    result = mp.distributional("Should sugary drinks be taxed?", ["Yes", "No"])
    text, html = str(result), result._repr_html_()
    assert text.startswith("mode: distributional   method: modular") and "[alpha]" in text and "Answer distribution" in text
    assert html.count("<tr>") == 2 and "Community messages (2)" in html
    result.community_messages["alpha"] = "<script>alert(1)</script>"
    assert "<script>" not in result._repr_html_() and "&lt;script&gt;" in result._repr_html_()
    vanilla = modplural.load("vanilla", protocol=short, device="cpu", dtype="float32")
    assert isinstance(vanilla, Vanilla) and not hasattr(vanilla, "pool")
    with pytest.raises(ModPluralError, match="unknown method 'oracle'"):
        modplural.load("oracle")

