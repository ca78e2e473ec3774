"""The community registry: validation, lookup, and the `communities` CLI.

(No model: the parts that need one are in tests/integration/test_communities.py.)"""

from __future__ import annotations

import json

import pytest

from modplural.communities import default_registry_path, load_registry
from modplural.errors import ModPluralError
from tests.helpers import assert_one_line_error, community_entry, run_cli, write_communities

NURSE = "You are a nurse in a rural clinic who has seen what delayed care costs."


def _persona_entry(name: str, **extra) -> dict:
    return {"name": name, "description": f"{name} perspective", "axis": "test axis", "persona": NURSE, **extra}


def test_shipped_registry_is_valid():
    registry = load_registry(default_registry_path())
    for community in registry.communities:
        assert community.adapter_present, f"{community.name}: adapter missing at {community.adapter}"


def test_load_select_and_paths(tmp_path):
    registry = load_registry(write_communities(tmp_path / "r.yaml", [community_entry("left", "a/left"), community_entry("right", "a/right", weight=2)]))
    assert registry.names == ["left", "right"]
    assert [c.name for c in registry.select(["right", "left"])] == ["right", "left"]
    assert registry.get("left").adapter == (tmp_path / "a" / "left").resolve()
    assert registry.get("right").weight == 2.0
    with pytest.raises(ModPluralError, match="unknown community 'centre'"):
        registry.select(["centre"])
    with pytest.raises(ModPluralError, match="duplicates"):
        registry.select(["left", "left"])


@pytest.mark.parametrize(
    "communities, message",
    [
        ([community_entry("left", "a", colour="red")], r"community 0 \(left\): unknown field 'colour'"),
        ([{k: v for k, v in community_entry("left", "a").items() if k != "axis"}], "missing field 'axis'"),
        ([community_entry("left", "a", weight=-1)], "weight must be >= 0"),
        ([community_entry("Left Wing", "a")], "lower_snake_case"),
        ([community_entry("left", "a"), community_entry("left", "b")], "listed twice"),
        ([community_entry("left", "a", corpus={"source": "x"})], "corpus: missing field 'licence'"),
        ([community_entry("left", "a", weight="heavy")], r"field 'weight' has a bad value 'heavy' \(expected a number\)"),
    ],
)
def test_invalid_registries(tmp_path, communities, message):
    with pytest.raises(ModPluralError, match=message):
        load_registry(write_communities(tmp_path / "r.yaml", communities))


def test_persona_entries_need_no_adapter(tmp_path):
    path = write_communities(tmp_path / "r.yaml", [_persona_entry("rural_nurses", persona=f"  {NURSE}\n"), community_entry("both", "a/both", persona="You are a patient.")])
    nurses, both = load_registry(path).communities
    assert nurses.persona == NURSE and nurses.adapter is None and nurses.base_model is None and nurses.corpus is None
    assert not nurses.adapter_present and nurses.as_persona() == nurses
    assert both.persona == "You are a patient." and both.adapter == (tmp_path / "a" / "both").resolve() and both.base_model == "default"
    plain = load_registry(write_communities(tmp_path / "p.yaml", [community_entry("left", "a/left")])).get("left").as_persona()
    assert plain.adapter is None and plain.persona == "You speak for this community: left perspective"


@pytest.mark.parametrize(
    "entry, message",
    [
        ({k: v for k, v in _persona_entry("nurses").items() if k != "persona"}, r"community 0 \(nurses\): needs an adapter, a persona, or both"),
        (_persona_entry("nurses", persona=" \n "), r"community 0 \(nurses\): persona is empty"),
        (_persona_entry("nurses", persona="x" * (1 << 20)), r"community 0 \(nurses\): persona is 1,048,576 characters, at most 8,000"),
        ({**_persona_entry("nurses"), "description": "d" * (1 << 20)}, r"community 0 \(nurses\): description is 1,048,576 characters, at most 1,000"),
        (_persona_entry("nurses", persona=["a", "b"]), r"field 'persona' has a bad value \['a', 'b'\] \(expected a string or null\)"),
        (_persona_entry("nurses", adapter="a/nurses"), r"community 0 \(nurses\): an adapter needs its base_model \(missing field 'base_model'\)"),
        (_persona_entry("nurses", adapter="a/nurses", base_model="default"), "an adapter needs its corpus"),
        (_persona_entry("nurses", corpus={"source": "x"}), "corpus: missing field 'licence'"),
    ],
)
def test_invalid_persona_entries(tmp_path, entry, message):
    with pytest.raises(ModPluralError, match=message) as error:
        load_registry(write_communities(tmp_path / "r.yaml", [entry]))
    assert str(tmp_path / "r.yaml") in str(error.value) and "\n" not in str(error.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ModPluralError, match="registry not found"):
        load_registry(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("communities: [unclosed")
    with pytest.raises(ModPluralError, match="not valid YAML"):
        load_registry(tmp_path / "bad.yaml")


def test_cli_list_prints_a_table(tmp_path):
    path = write_communities(tmp_path / "r.yaml", [community_entry("health_left", "a/left"), community_entry("health_right", "a/right")])
    result = run_cli("communities", "list", "--registry", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "axis", "weight", "adapter"]
    assert "health_left" in lines[2] and "missing" in lines[2] and "CC0" in lines[2]
    assert len(lines) == 4
    persona_only = write_communities(tmp_path / "p.yaml", [_persona_entry("rural_nurses")])
    [row] = json.loads(run_cli("communities", "list", "--registry", str(persona_only), "--json").stdout)
    assert row["adapter"] == "none" and row["persona"] == "yes" and row["licence"] == "-"


def test_terminal_escapes_in_a_registry_are_never_printed_raw(tmp_path):
    path = write_communities(tmp_path / "r.yaml", [community_entry("health_left", "a/left", axis="left\x1b]0;owned\x07\x1b[2J")])
    result = run_cli("communities", "list", "--registry", str(path))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "left\\x1b]0;owned\\x07\\x1b[2J" in result.stdout


def test_cli_bad_registry_is_one_line(tmp_path):
    path = write_communities(tmp_path / "r.yaml", [community_entry("left", "a", colour="red")])
    assert_one_line_error(run_cli("communities", "list", "--registry", str(path)), "unknown field 'colour'")

