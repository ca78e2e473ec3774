"""One assembly point: which main LLM answers, which backends are shared, and nothing else builds a backend.

(No model: the parts that need one are in tests/integration/test_assembly.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modplural.errors import ModPluralError
from modplural.types import MODES, check_mode

REPO = Path(__file__).resolve().parents[2]
BACKEND_CLASSES = ("LocalBackend", "SequentialBackend", "OpenAIBackend", "RoutedBackend", "CachingBackend")


def test_the_main_llm_a_user_gets_is_the_offline_1_5b(monkeypatch):
    from modplural.backends.int8_weights import int8_fast
    from modplural.models import QWEN_MODEL, default_main_model, resolve_weight_format

    monkeypatch.delenv("MODPLURAL_MAIN_MODEL")
    assert default_main_model() == QWEN_MODEL == "qwen2.5-coder-1.5b-instruct"
    monkeypatch.setenv("MODPLURAL_MAIN_MODEL", "  ")
    assert default_main_model() == QWEN_MODEL
    assert resolve_weight_format("auto", "cpu", "auto") == ("int8" if int8_fast("cpu") else "float")  # int8 only where it is faster
    assert resolve_weight_format("auto", "cpu", "bfloat16") == "float" and resolve_weight_format("int8", "cpu", "auto") == "int8"
    with pytest.raises(ModPluralError, match="int8 weights compute in float32"):
        resolve_weight_format("int8", "cpu", "bfloat16")
    with pytest.raises(ModPluralError, match="unknown weight format 'int4'"):
        resolve_weight_format("int4", "cpu", "auto")


def test_nothing_else_constructs_a_backend():
    """Library, CLI and experiments build backends only through modplural/assembly.py."""
    pattern = re.compile(rf"\b({'|'.join(BACKEND_CLASSES)})\(")
    sites = []
    for path in [*(REPO / "modplural").rglob("*.py"), *(REPO / "experiments").rglob("*.py")]:
        if path.name == "assembly.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("class "):
                sites.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert sites == []


def test_one_vocabulary_for_modes():
    assert MODES == ("overton", "steerable", "distributional")
    assert [check_mode(m) for m in ("overton", "steer", "distribution", "steerable")] == ["overton", "steerable", "distributional", "steerable"]
    with pytest.raises(ModPluralError, match="unknown mode 'pluralistic': choose one of overton, steerable, distributional"):
        check_mode("pluralistic")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"communities": []}, "communities is empty: name at least one community, or pass None"),
    ({"communities": [3]}, "communities must be a community name or a list of names, got [3]"),
    ({"communities": ["patients", " "]}, "communities must be a community name or a list of names"),
    ({"seed": "x"}, "seed must be a whole number, got 'x'"),
    ({"seed": True}, "seed must be a whole number, got True"),
    ({"cache": 123}, "cache must be true, false or a cache file path, got int 123"),
    ({"message_tokens": 0}, "message_tokens"),
])
def test_load_refuses_misused_arguments_before_any_model_loads(kwargs, fragment, tmp_path):
    import modplural

    with pytest.raises(ModPluralError, match=re.escape(fragment)) as error:
        modplural.load("modular", registry=tmp_path / "missing.yaml", **kwargs)  # a missing registry would be the error after the checks
    assert "\n" not in str(error.value)


def test_one_community_may_be_named_by_a_string():
    from modplural.assembly import _community_names

    assert _community_names("patients") == ("patients",) and _community_names(["a", "b"]) == ("a", "b") and _community_names(None) is None

