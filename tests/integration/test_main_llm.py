"""The main LLM a user gets: Qwen2.5-Coder-1.5B-Instruct (int8 on a CPU) with the shipped SmolLM2 communities, end to end.

One test per mode on the real models (short messages and answers keep them to about a minute each), plus the
int8 engine against float32 on the 1.5B itself. These are the only tests that load the 1.5B; every other test
runs SmolLM2 as its main LLM (``tests/conftest.py`` sets ``MODPLURAL_MAIN_MODEL``)."""

from __future__ import annotations

import gc
import json
import os

import pytest

from modplural.backends.int8_weights import int8_fast
from tests.helpers import needs_qwen, run_cli

pytestmark = [pytest.mark.slow, needs_qwen]
COMMUNITIES = ["clinicians", "patients", "public_health_agencies"]
QWEN_INT8 = "Qwen/Qwen2.5-Coder-1.5B-Instruct@Qwen2.5-Coder-1.5B-Instruct.gguf#int8-rowwise-v1"


@pytest.fixture(scope="module")
def modular(tmp_path_factory):
    """Modular Pluralism as ``modplural.load`` builds it when the user names no main LLM."""
    import modplural

    saved = os.environ.pop("MODPLURAL_MAIN_MODEL")
    try:
        yield modplural.load(communities=COMMUNITIES, message_tokens=24, cache=tmp_path_factory.mktemp("cache") / "c.sqlite", device="cpu",
                             protocol={"base": "modplural", "main_tokens": 48, "steer_tokens": 48})
    finally:
        os.environ["MODPLURAL_MAIN_MODEL"] = saved


def test_overton_from_the_command_line_names_the_1_5b(tmp_path):
    env = {"MODPLURAL_MAIN_MODEL": ""}  # empty: as if unset (run_cli adds the rest of this process's environment)
    result = run_cli("ask", "Should sugary drinks be taxed?", "--communities", ",".join(COMMUNITIES), "--message-tokens", "24",
                     "--max-new-tokens", "48", "--device", "cpu", "--json", "--cache", str(tmp_path / "c.sqlite"), env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["main_model"] == (QWEN_INT8 if int8_fast("cpu") else QWEN_INT8.split("#")[0])  # auto: int8 where its products are fast
    assert set(answer["community_messages"]) == set(COMMUNITIES)
    assert len(answer["response"].split()) >= 10


def test_steerable_picks_a_community_and_answers(modular):
    r = modular.steerable("Should I get a second opinion before surgery?", attribute="the value of patient autonomy")
    assert r.chosen_community in COMMUNITIES
    assert set(r.selection_scores) == set(COMMUNITIES) and sum(r.selection_scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert r.selection_mass > 0.5  # the 1.5B puts its probability on the community numbers (SmolLM2 does not)
    assert len(r.response.split()) >= 5


def test_distributional_reads_the_options(modular):
    r = modular.distributional("Should sugary drinks be taxed?", ["Yes", "No", "Not sure"])
    assert sum(r.distribution) == pytest.approx(1.0, abs=1e-6) and all(p >= 0 for p in r.distribution)
    assert set(r.community_distributions) == set(COMMUNITIES)
    assert r.option_mass > 0.75  # measured 0.89 here; SmolLM2-135M as the main LLM of `ask --method vanilla`: 0.52


def test_int8_agrees_with_float32_on_the_1_5b():
    """The int8 engine on the real 1.5B: option probabilities within 0.05 of float32 (measured: 0.01 typical), the
    same greedy start; a row in a batch within 1e-3 of the row alone (float code between the layers depends on the
    batch's shape, and a rounding step of the quantization can widen that: measured 1.3e-4 and 2.5e-4)."""
    from modplural.backends.base import Decoding, GenerateRequest, OptionRequest
    from modplural.backends.local import LocalBackend

    prompts = ["Question: Should sugary drinks be taxed?\nA. Yes B. No C. Not sure", "Question: Should vaccines be mandatory for school?\nA. Yes B. No"]
    options = [OptionRequest(labels=("A", "B", "C")[: 3 - i], messages=({"role": "user", "content": p},), answer_prefix="Answer:") for i, p in enumerate(prompts)]
    greedy = [GenerateRequest(messages=({"role": "user", "content": "Name one argument for a sugar tax."},), decoding=Decoding(max_new_tokens=12))]
    int8 = LocalBackend("qwen2.5-coder-1.5b-instruct", device="cpu", weight_format="int8", batch_size=4)
    assert int8.kernels == "int8-rowwise-v1" and int8.adapter_identity(None) == QWEN_INT8
    together = int8.option_probs(options)
    alone = [int8.option_probs([o])[0] for o in options]
    assert max(abs(a - b) for x, y in zip(together, alone) for a, b in zip(x.probs, y.probs)) < 1e-3
    twice = int8.option_probs([options[0], options[0]])
    assert twice[0].probs == twice[1].probs  # the same row twice in one batch: the same numbers
    assert max(abs(a - b) for a, b in zip(twice[0].probs, alone[0].probs)) < 1e-3
    int8_text = int8.generate(greedy)[0]
    del int8
    gc.collect()  # never two copies of the 1.5B in one process
    # the plain kernel: prepacking would hold the mapped float32 file and its packed copy at once (12 GB) while loading
    float32 = LocalBackend("qwen2.5-coder-1.5b-instruct", device="cpu", weight_format="float", batch_size=4, packed_weights=False)
    reference = float32.option_probs(options)
    for a, b in zip(together, reference):
        assert max(abs(x - y) for x, y in zip(a.probs, b.probs)) < 0.05
        assert abs(a.mass - b.mass) < 0.05
    assert float32.generate(greedy)[0].split()[:3] == int8_text.split()[:3]

