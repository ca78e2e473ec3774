"""Bad weights, options, text, files and config values: each is one ModPluralError (one CLI line), before any model loads."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modplural.communities import Community, Corpus, load_registry
from modplural.errors import ModPluralError
from modplural.protocol import MODPLURAL
from modplural.methods import Method
from modplural.types import Query
from modplural.pool import CommunityPool
from modplural.runs.config import load_config
from modplural.tasks.distributional import DistributionalTask
from modplural.tasks.overton import OvertonTask
from tests.helpers import assert_one_line_error, run_cli

CONFIG = {"name": "hardening", "tasks": ["vital_distributional_moralchoice"], "methods": ["vanilla"]}
ENTRY = {"name": "left", "description": "d", "axis": "a", "base_model": "default", "adapter": "a/left", "corpus": {"source": "s", "licence": "CC0"}}
SURVEY = {"question": "Q?", "options": ["a", "b"], "attribute": "Kenya", "gold_distribution": [0.25, 0.75], "id": 1}


def _pool(*weights: float) -> CommunityPool:
    """A pool of communities with these registry weights; weights are resolved without touching its backend."""
    communities = [Community(f"c{i}", "d", "a", "default", Path("/none"), Corpus("s", "l"), w) for i, w in enumerate(weights)]
    return CommunityPool(backend=None, communities=communities)


def _yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# 5. weights ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "weights, message",
    [
        ([math.inf, 1], r"weights\[0\] must be a finite number"),
        ([1, math.nan], r"weights\[1\] must be a finite number"),
        ([10**400, 1], r"weights\[0\] must be a finite number"),
        ([True, 1], r"weights\[0\] must be a number"),
        (["x", 1], r"weights\[0\] must be a number"),
        ([None, 1], r"weights\[0\] must be a number"),
        ([0, 0], "sum to zero"),
        ([-1, 2], "non-negative"),
        (5, "must be 'uniform', 'registry' or a list of numbers"),
        ("heavy", "must be 'uniform', 'registry' or a list of numbers"),
    ],
)
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ModPluralError, match=message):
        _pool(1, 1).resolve_weights(weights)
    with pytest.raises(ModPluralError, match=message):
        Query("q", options=("a", "b"), weights=weights)


@pytest.mark.parametrize(
    "weights, expected",
    [([1e308, 1e308], [0.5, 0.5]), ([1.7e308, 1e-300], [1.0, 0.0]), ([5e-324, 5e-324], [0.5, 0.5]), ([0, 3], [0.0, 1.0])],
)
def test_extreme_weights_normalise_without_overflow(weights, expected):
    assert _pool(1, 1).resolve_weights(weights) == pytest.approx(expected)
    assert _pool(*weights).resolve_weights("registry") == pytest.approx(expected)


@pytest.mark.parametrize("weight, message", [(".inf", "weight must be a finite number"), (".nan", "weight must be a finite number"), ("1" + "0" * 400, "weight must be a finite number"), ("-1", "weight must be >= 0")])
def test_registry_weight_must_be_finite(tmp_path, weight, message):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"communities": [ENTRY]}).replace("name: left", f"name: left\n  weight: {weight}"))
    with pytest.raises(ModPluralError, match=message) as info:
        load_registry(path)
    assert str(path) in str(info.value) and "(left)" in str(info.value)


def test_cli_non_finite_weights_are_one_line():
    result = run_cli("ask", "Q?", "--mode", "distributional", "--option", "a", "--option", "b", "--weights", "inf,1")
    assert_one_line_error(result, "--weights[0] must be a finite number")


# 7. the Python API -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "fields, message",
    [
        ({"options": "Yes"}, "options must be a list of strings, got str"),
        ({"options": 5}, "options must be a list of strings, got int"),
        ({"options": ["a", 1]}, "option 2 must be a string"),
        ({"options": ["a", "b"], "attribute": 5}, "the attribute must be a string"),
        ({"persona": ["You are"]}, "the persona must be a string"),
        ({"text": None}, "the query must be a string"),
    ],
)
def test_query_refuses_wrong_types(fields, message):
    with pytest.raises(ModPluralError, match=message):
        Query(**{"text": "q", **fields})


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.distributional("Q?", "Yes"), "options must be a list of strings, got str"),
        (lambda m: m.distributional("Q?", ["Yes", "No"], weights=["1", "2"]), r"weights\[0\] must be a number"),
        (lambda m: m.steerable("Q?", "the value of care", options="AB"), "options must be a list of strings, got str"),
        (lambda m: m.steerable("Q?", 3), "the attribute must be a string"),
    ],
)
def test_method_api_refuses_a_string_for_options(call, message):
    with pytest.raises(ModPluralError, match=message):
        call(Method(main=None))  # refused while building the query: the main LLM is never reached


@pytest.mark.parametrize(
    "value, message",
    [({"question": "Q?"}, "expected a query string or a dict with 'text'"), ({"text": "Q?", "colour": "red"}, "expected a query string"),
     (["Q?"], "expected a query string"), ({"text": "Q?", "options": "Yes"}, "options must be a list of strings")],
)
def test_runnable_input_is_checked(value, message):
    with pytest.raises(ModPluralError, match=message):
        Method(main=None).as_runnable("distributional").invoke(value)


def test_run_needs_query_objects():
    with pytest.raises(ModPluralError, match="run needs a list of Query objects"):
        Method(main=None).run("overton", ["Is fluoride safe?"])


# 8. undecodable text, non-UTF-8 files, extends cycles -------------------------------------------

def test_cli_question_that_is_not_utf8_is_one_line():
    result = subprocess.run([sys.executable, "-m", "modplural", "ask", b"\xff\xfe"], capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, "the query is not valid UTF-8 text")


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


# 9. option and config-field names ----------------------------------------------------------------

@pytest.mark.parametrize("option", ["--message-tokens", "--max-new-tokens"])
def test_cli_token_counts_name_the_option(option):
    assert_one_line_error(run_cli("ask", "Q?", option, "-1"), f"{option} must be at least 1, got -1")


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
