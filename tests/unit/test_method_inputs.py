"""What a method is handed: weights, queries, options and token counts; each bad one is one ModPluralError (one CLI line), before any
model loads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from modplural.communities import Community, Corpus, load_registry
from modplural.errors import ModPluralError
from modplural.methods import Method
from modplural.pool import CommunityPool
from modplural.types import Query
from tests.helpers import assert_one_line_error, run_cli

ENTRY = {"name": "left", "description": "d", "axis": "a", "base_model": "default", "adapter": "a/left", "corpus": {"source": "s", "licence": "CC0"}}


def _pool(*weights: float) -> CommunityPool:
    """A pool of communities with these registry weights; weights are resolved without touching its backend."""
    communities = [Community(f"c{i}", "d", "a", "default", Path("/none"), Corpus("s", "l"), w) for i, w in enumerate(weights)]
    return CommunityPool(backend=None, communities=communities)


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


@pytest.mark.parametrize("option", ["--message-tokens", "--max-new-tokens"])
def test_cli_token_counts_name_the_option(option):
    assert_one_line_error(run_cli("ask", "Q?", option, "-1"), f"{option} must be at least 1, got -1")

