"""One assembly point: which main LLM answers, which backends are shared, and nothing else builds a backend."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from modplural.assembly import StackSpec, assemble
from modplural.errors import ModPluralError
from modplural.types import MODES, check_mode
from tests.helpers import write_registry

REPO = Path(__file__).resolve().parents[1]
BACKEND_CLASSES = ("LocalBackend", "SequentialBackend", "OpenAIBackend", "RoutedBackend", "CachingBackend")


def test_main_llm_precedence(tmp_path, adapter_dirs):
    """--model / main_model (explicit) > a servers file's main: > the communities' backend > the default model."""
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

    main, pool = assemble(StackSpec(with_pool=False, **common))
    assert pool is None and isinstance(main, LocalBackend) and main.adapters == []

    # with the cache on, the main LLM is the same backend behind its answer cache; the pool keeps the raw backend
    main, pool = assemble(StackSpec(**{**common, "cache": tmp_path / "cache.sqlite"}))
    assert isinstance(main, CachingBackend) and main.inner is pool.backend and main.cache is pool.cache
    assert main.adapter_identity(None) == pool.backend.adapter_identity(None)  # what the run manifest records
    main, pool = assemble(StackSpec(with_pool=False, **{**common, "cache": tmp_path / "cache.sqlite"}))
    assert pool is None and isinstance(main, CachingBackend) and isinstance(main.inner, LocalBackend)


def test_unknown_engine_and_mixed_bases_are_one_line_errors(tmp_path, adapter_dirs):
    with pytest.raises(ModPluralError, match="unknown engine 'turbo': choose batched or sequential"):
        assemble(StackSpec(engine="turbo", with_pool=False))
    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    registry.write_text(registry.read_text().replace("base_model: default", "base_model: other", 1))
    with pytest.raises(ModPluralError, match="different base models"):
        assemble(StackSpec(registry=registry, cache=False))


def test_nothing_else_constructs_a_backend():
    """Library, CLI and experiments build backends only through modplural/assembly.py."""
    pattern = re.compile(rf"\b({'|'.join(BACKEND_CLASSES)})\(")
    sites = []
    for path in [*(REPO / "modplural").rglob("*.py"), *(REPO / "experiments").glob("*.py")]:
        if path.name == "assembly.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("class "):
                sites.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert sites == []


@pytest.mark.parametrize("module", ["modplural.methods", "modplural.assembly", "modplural.cli"])
def test_the_method_layer_imports_no_torch(module):
    """A user who drives only HTTP servers does not pay for torch or transformers (python -X importtime)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, cwd=REPO, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert module in imported
    assert not {m for m in imported if m.split(".")[0] in ("torch", "transformers", "peft")}


def test_one_vocabulary_for_modes():
    assert MODES == ("overton", "steerable", "distributional")
    assert [check_mode(m) for m in ("overton", "steer", "distribution", "steerable")] == ["overton", "steerable", "distributional", "steerable"]
    with pytest.raises(ModPluralError, match="unknown mode 'pluralistic': choose one of overton, steerable, distributional"):
        check_mode("pluralistic")


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
