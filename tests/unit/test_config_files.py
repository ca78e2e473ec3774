"""Registries, task files and experiment configs that are not what they should be (not UTF-8, lone surrogates, extends cycles, YAML the
parser refuses, bad values): one line naming the file and field, before the run directory or any model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from modplural.communities import load_registry
from modplural.errors import ModPluralError
from modplural.protocol import MODPLURAL
from modplural.runs.config import load_config
from modplural.tasks.distributional import DistributionalTask
from modplural.tasks.overton import OvertonTask
from tests.helpers import assert_one_line_error, run_cli

CONFIG = {"name": "hardening", "tasks": ["vital_distributional_moralchoice"], "methods": ["vanilla"]}
ENTRY = {"name": "left", "description": "d", "axis": "a", "base_model": "default", "adapter": "a/left", "corpus": {"source": "s", "licence": "CC0"}}
SURVEY = {"question": "Q?", "options": ["a", "b"], "attribute": "Kenya", "gold_distribution": [0.25, 0.75], "id": 1}


def _yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_registry_not_utf8_names_the_file(tmp_path, encoding):
    path = tmp_path / "registry.yaml"
    path.write_bytes(yaml.safe_dump({"communities": [{**ENTRY, "description": "Santé publique"}]}, allow_unicode=True).encode(encoding))
    with pytest.raises(ModPluralError, match="not UTF-8 text"):
        load_registry(path)
    assert_one_line_error(run_cli("communities", "list", "--registry", str(path)), str(path), "not UTF-8 text")


def test_task_file_not_utf8_names_the_file_before_the_run_directory(tmp_path):
    task_file = tmp_path / "data" / "vital" / "vital_distributional_moralchoice.json"
    task_file.parent.mkdir(parents=True)
    task_file.write_bytes(json.dumps([{**SURVEY, "question": "Faut-il vacciner?"}]).encode("utf-16"))
    with pytest.raises(ModPluralError, match="not UTF-8 text") as info:
        DistributionalTask("d", country_persona=False).load(task_file, MODPLURAL)
    assert str(task_file) in str(info.value)
    out = tmp_path / "out"
    result = run_cli("run", str(_yaml(tmp_path / "c.yaml", CONFIG)), "--data-dir", str(tmp_path / "data"), "--out", str(out))
    assert_one_line_error(result, str(task_file), "not UTF-8 text")
    assert not out.exists()


@pytest.mark.parametrize("items, why", [([], "it holds no items"), ([{**SURVEY, "options": ["Yes"], "gold_distribution": [1.0]}], "all 1 of its items are skipped")])
def test_a_task_file_with_nothing_to_run_is_refused_before_any_model_loads(tmp_path, items, why):
    task_file = tmp_path / "data" / "vital" / "vital_distributional_moralchoice.json"
    task_file.parent.mkdir(parents=True)
    task_file.write_text(json.dumps(items))
    out = tmp_path / "out"
    result = run_cli("run", str(_yaml(tmp_path / "c.yaml", CONFIG)), "--data-dir", str(tmp_path / "data"), "--out", str(out))
    assert_one_line_error(result, str(task_file), "nothing to run for vital_distributional_moralchoice", why)
    assert not out.exists() and "Loading weights" not in result.stderr


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "task.json"
    path.write_bytes(json.dumps([SURVEY]).encode("utf-8-sig"))
    items, _ = DistributionalTask("d", country_persona=False).load(path, MODPLURAL)
    assert [i.id for i in items] == ["1|Kenya"]


def test_lone_surrogates_in_a_task_file_name_item_and_field(tmp_path):
    path = tmp_path / "task.json"
    path.write_text('[{"id": 1, "input": "ok", "vrd": ["v", "\\udc80"], "explanation": ["e", "f"]}]')
    with pytest.raises(ModPluralError, match=r"item 0: field vrd\[1\] is not valid UTF-8 text"):
        OvertonTask().load(path, MODPLURAL)


def test_extends_cycles_are_one_line(tmp_path):
    _yaml(tmp_path / "self.yaml", {**CONFIG, "extends": "self.yaml"})
    _yaml(tmp_path / "a.yaml", {"extends": "b.yaml"})
    _yaml(tmp_path / "b.yaml", {**CONFIG, "extends": "a.yaml"})
    with pytest.raises(ModPluralError, match=r"self.yaml: 'extends' forms a cycle: .*self.yaml -> .*self.yaml$"):
        load_config(tmp_path / "self.yaml")
    with pytest.raises(ModPluralError, match=r"'extends' forms a cycle: .*a.yaml -> .*b.yaml -> .*a.yaml$"):
        load_config(tmp_path / "a.yaml")
    assert_one_line_error(run_cli("run", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "out")), "'extends' forms a cycle", "b.yaml -> ")
    assert not (tmp_path / "out").exists()


def test_extends_that_is_not_a_file_name(tmp_path):
    with pytest.raises(ModPluralError, match="field 'extends' must be a file name"):
        load_config(_yaml(tmp_path / "c.yaml", {**CONFIG, "extends": ["base.yaml"]}))


@pytest.mark.parametrize(
    "text, message",
    [
        ("when: 2020-13-45", "month must be in 1..12"),
        ("seed: !!int x", "not valid YAML"),
        ("seed: !!timestamp x", "not valid YAML"),
        ("seed: 1" + "0" * 5000, "not valid YAML"),
        ("tasks: " + "[" * 5000 + "]" * 5000, "not valid YAML"),
        ('name: "\\udc80"', "name is not valid UTF-8 text"),
        ("[1, 2]", "expected a mapping at the top level"),
    ],
)
def test_yaml_parser_failures_are_errors(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ModPluralError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("message_top_p", 2, r"message_top_p must be in \(0, 1\], got 2"),
        ("message_top_p", 0, r"message_top_p must be in \(0, 1\], got 0"),
        ("message_temperature", math.nan, "message_temperature must be a finite number, got nan"),
        ("message_temperature", -0.5, "message_temperature must be >= 0"),
        ("message_tokens", 0, "message_tokens must be at least 1, got 0"),
        ("main_tokens", -5, "main_tokens must be at least 1, got -5"),
        ("device", "tpu", "device must be one of auto, cpu, cuda, mps, got 'tpu'"),
        ("dtype", "float8", "dtype must be one of auto, float32, bfloat16, float16, got 'float8'"),
    ],
)
def test_config_values_name_file_and_field(tmp_path, field, value, message):
    path = _yaml(tmp_path / "bad.yaml", {**CONFIG, field: value})
    with pytest.raises(ModPluralError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("field, value", [("message_top_p", 2), ("device", "tpu")])
def test_cli_config_value_errors_come_before_the_run_directory(tmp_path, field, value):
    path = _yaml(tmp_path / "bad.yaml", {**CONFIG, field: value})
    out = tmp_path / "run"
    assert_one_line_error(run_cli("run", str(path), "--out", str(out)), str(path), field)
    assert not out.exists()

