"""The ethos method: the perspective parser on hostile lists, fallbacks to registry personas, protocol refusal,
and the three modes end to end on the real default model (tiny token counts, two communities).

(On the real model: the parts that need none are in tests/unit/test_ethos.py.)"""

from __future__ import annotations

import json

import pytest

from modplural.communities import load_registry
from modplural.methods import Ethos, build_method
from modplural.pool import CommunityPool
from tests.helpers import assert_one_line_error, run_cli, write_registry

QUESTION = "Should parents be allowed to refuse vaccines for their children?"
OPTIONS = ["Yes", "No", "It depends"]
SHORT = {"base": "modplural", "main_tokens": 10}


RELEASED = {"base": "modplural", "ethos": "released"}


@pytest.fixture(scope="module")
def registry_path(adapter_dirs, tmp_path_factory):
    return write_registry(tmp_path_factory.mktemp("registry") / "registry.yaml", adapter_dirs)


def _check_voices(result, k: int) -> None:
    assert 2 <= len(result.perspectives) <= k and list(result.community_messages) == [p["name"] for p in result.perspectives]
    sources = [p["source"] for p in result.perspectives]
    assert set(sources) <= {"main LLM", "registry"} and ("registry" not in sources or sources.count("main LLM") < 2)
    assert all(result.community_messages.values())


def test_ethos_on_the_real_model_in_all_three_modes(backend, registry_path):
    from modplural.backends import Decoding

    personas = CommunityPool(backend, [c.as_persona() for c in load_registry(registry_path).select()], Decoding(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=0))
    method = build_method("ethos", backend, personas, SHORT, ethos_perspectives=3)
    overton = method.overton(QUESTION)
    _check_voices(overton, 3)
    assert overton.response and all(m in overton.main_prompts[1] for m in overton.community_messages.values())
    steer = method.steerable(QUESTION, "the value of bodily autonomy", options=OPTIONS)
    _check_voices(steer, 3)
    assert sum(steer.selection_scores.values()) == pytest.approx(1.0) and steer.chosen_community == max(steer.selection_scores, key=steer.selection_scores.get)
    assert sum(steer.distribution) == pytest.approx(1.0)
    dist = method.distributional(QUESTION, OPTIONS)
    _check_voices(dist, 3)
    assert sum(dist.distribution) == pytest.approx(1.0) and all(sum(d) == pytest.approx(1.0) for d in dist.community_distributions.values())
    assert dist.to_dict()["perspectives"] == dist.perspectives and "Perspectives" in str(dist)


@pytest.mark.slow
def test_released_steps_on_the_real_model_are_bounded_and_recorded(backend, registry_path):
    from modplural.backends import Decoding

    personas = CommunityPool(backend, [c.as_persona() for c in load_registry(registry_path).select()], Decoding(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=0))
    result = build_method("ethos", backend, personas, {**RELEASED, "main_tokens": 10}).overton(QUESTION)
    _check_voices(result, 9)
    assert len({p["attempts"] for p in result.perspectives}) == 1 and 1 <= result.perspectives[0]["attempts"] <= 3
    assert result.main_prompts[0].startswith("\nGenerate 6 contrasting ethical perspectives on:") and result.response


def test_load_ethos_reads_the_registry_without_adapters(registry_path):
    import modplural

    method = modplural.load("ethos", registry=registry_path, protocol=SHORT, message_tokens=6, cache=False, device="cpu", dtype="float32", ethos_perspectives=2)
    assert isinstance(method, Ethos) and method.main.adapters == [] and method.perspectives == 2
    assert [c.name for c in method.fallback] == ["alpha", "beta"] and method.fallback[0].persona == "You speak for this community: people who speak like alpha"


def test_cli_ask_ethos(registry_path, tmp_path):
    common = ["--registry", str(registry_path), "--device", "cpu", "--max-new-tokens", "8", "--message-tokens", "6", "--cache", str(tmp_path / "c.sqlite")]
    result = run_cli("ask", QUESTION, "--method", "ethos", "--ethos-perspectives", "2", "--mode", "distributional", "--option", "Yes", "--option", "No", "--json", *common)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["method"] == "ethos" and sum(payload["distribution"]) == pytest.approx(1.0) and len(payload["perspectives"]) == 2
    assert_one_line_error(run_cli("ask", QUESTION, "--method", "ethos", "--protocol", "original", "--switch", "ethos=modplural", *common),
                          "method 'ethos' has its own perspective step in modplural prompts only")
    assert_one_line_error(run_cli("ask", QUESTION, "--method", "ethos", "--ethos-perspectives", "1", *common), "ethos_perspectives must be")

