"""Modular Pluralism's three modes and the baselines, end to end on the real default model with two adapters."""

from __future__ import annotations

import json

import pytest

from modplural.backends import GenerateRequest
from modplural.backends.caching import CachingBackend, answer_key
from modplural.communities import Community, load_registry
from modplural.errors import ModPluralError
from modplural.message_cache import MessageCache
from modplural.methods import ModularPluralism, build_method
from modplural.pool import CommunityPool
from tests.helpers import MESSAGES, assert_one_line_error, run_cli, write_registry

QUESTION = "Should parents be allowed to refuse vaccines for their children?"
OPTIONS = ["Yes", "No", "It depends"]
SHORT = {"base": "modplural", "main_tokens": 10}  # the modplural protocol with short main-LLM answers


class CountingBackend:
    """Passes calls through to a real backend and counts the rows that used a community adapter."""

    def __init__(self, inner) -> None:
        self.inner, self.community_rows = inner, 0

    def generate(self, requests):
        self.community_rows += sum(r.adapter is not None for r in requests)
        return self.inner.generate(requests)

    def option_probs(self, requests):
        self.community_rows += sum(r.adapter is not None for r in requests)
        return self.inner.option_probs(requests)

    def adapter_identity(self, adapter):
        return self.inner.adapter_identity(adapter)


@pytest.fixture(scope="module")
def registry_path(adapter_dirs, tmp_path_factory):
    return write_registry(tmp_path_factory.mktemp("registry") / "registry.yaml", adapter_dirs)


@pytest.fixture
def pool(backend, registry_path):
    return CommunityPool(backend, load_registry(registry_path).select(), decoding=MESSAGES)


@pytest.fixture
def modular(backend, pool):
    return ModularPluralism(backend, pool, protocol=SHORT)


def test_overton_grounds_the_main_llm_on_every_message(modular):
    result = modular.overton(QUESTION)
    assert list(result.community_messages) == ["alpha", "beta"]
    assert all(result.community_messages.values()) and result.response
    for message in result.community_messages.values():
        assert message in result.main_prompts[0]
    assert "diverse values and perspectives" in result.main_prompts[0]


def test_steer_chooses_the_argmax_and_answers_from_its_message(modular):
    result = modular.steerable(QUESTION, "the value of bodily autonomy")
    scores = result.selection_scores
    assert set(scores) == {"alpha", "beta"} and sum(scores.values()) == pytest.approx(1.0)
    assert result.chosen_community == max(scores, key=scores.get)
    selection, answer = result.main_prompts
    assert "the value of bodily autonomy" in selection and all(m in selection for m in result.community_messages.values())
    assert result.community_messages[result.chosen_community] in answer
    assert result.response


def test_steer_with_options_returns_a_distribution(modular):
    result = modular.steerable(QUESTION, "the value of public health", options=OPTIONS)
    assert result.response is None and result.options == OPTIONS
    assert sum(result.distribution) == pytest.approx(1.0) and len(result.distribution) == 3


def test_distribution_aggregates_with_weights(modular):
    uniform = modular.distributional(QUESTION, OPTIONS)
    assert sum(uniform.distribution) == pytest.approx(1.0)
    per = uniform.community_distributions
    assert all(sum(d) == pytest.approx(1.0) for d in per.values())
    assert uniform.weights == {"alpha": 0.5, "beta": 0.5}
    assert uniform.distribution == pytest.approx([(a + b) / 2 for a, b in zip(per["alpha"], per["beta"])])
    only_beta = modular.distributional(QUESTION, OPTIONS, weights=[0, 3])
    assert only_beta.distribution == pytest.approx(per["beta"], abs=1e-12)
    registry = modular.distributional(QUESTION, OPTIONS, weights="registry")  # registry weights 1 and 2
    assert registry.weights == pytest.approx({"alpha": 1 / 3, "beta": 2 / 3})
    for message in uniform.community_messages.values():
        assert any(message in prompt for prompt in uniform.main_prompts)


def test_same_call_with_a_seed_gives_the_same_result(backend, registry_path):
    def run():
        pool = CommunityPool(backend, load_registry(registry_path).select(), decoding=MESSAGES)  # no cache
        return ModularPluralism(backend, pool, protocol=SHORT).distributional(QUESTION, OPTIONS).to_dict()

    assert run() == run()


def test_cache_hit_reproduces_output_without_running_communities(backend, registry_path, tmp_path):
    communities = load_registry(registry_path).select()
    first_backend = CountingBackend(backend)
    first = ModularPluralism(first_backend, CommunityPool(CachingBackend(first_backend, MessageCache(tmp_path / "m.sqlite")), communities, MESSAGES), SHORT)
    before = first.overton(QUESTION).to_dict()
    assert first_backend.community_rows == 2 and len(MessageCache(tmp_path / "m.sqlite")) == 2
    second_backend = CountingBackend(backend)
    second = ModularPluralism(second_backend, CommunityPool(CachingBackend(second_backend, MessageCache(tmp_path / "m.sqlite")), communities, MESSAGES), SHORT)
    assert second.overton(QUESTION).to_dict() == before
    assert second_backend.community_rows == 0 and second.pool.generated == 0


def test_persona_communities_speak_with_a_system_message(backend, adapter_dirs, tmp_path):
    """A persona-only community runs on the base model with its persona as the system turn; with an adapter too, on that adapter."""
    nurse = Community("rural_nurses", "rural nurses", "test", persona="You are a nurse in a rural clinic.")
    patient = Community("alpha", "alpha", "test", "default", adapter_dirs["alpha"], persona="You are a patient.")
    pool = CommunityPool(CachingBackend(backend, MessageCache(tmp_path / "m.sqlite")), [nurse, patient], MESSAGES)
    prompt = "Should clinics open on Sundays?"
    asked = pool.request(nurse, prompt)
    assert asked.messages == ({"role": "system", "content": nurse.persona}, {"role": "user", "content": prompt}) and asked.adapter is None
    assert pool.request(patient, prompt).adapter == "alpha" and pool.request(patient, prompt).messages[0]["content"] == "You are a patient."
    plain = GenerateRequest(messages=({"role": "user", "content": prompt},), decoding=asked.decoding)
    assert answer_key("generate", backend.adapter_identity(None), asked) != answer_key("generate", backend.adapter_identity(None), plain)
    assert pool.identity("rural_nurses").startswith(backend.adapter_identity(None) + "+persona:")
    assert pool.identity("alpha").startswith(backend.adapter_identity("alpha") + "+persona:")
    [messages] = pool.messages([prompt])
    assert list(messages) == ["rural_nurses", "alpha"] and all(messages.values()) and pool.generated == 2
    again = CommunityPool(CachingBackend(backend, MessageCache(tmp_path / "m.sqlite")), [nurse, patient], MESSAGES)
    assert again.messages([prompt]) == [messages] and again.generated == 0
    pool.write([plain])
    assert pool.generated == 3  # the plain base model's message is another cache entry, not the nurse's


@pytest.mark.parametrize("name", ["vanilla", "prompting", "moe"])
def test_baselines_share_the_interface(name, backend, pool):
    method = build_method(name, backend, pool, SHORT)
    overton = method.overton(QUESTION)
    steer = method.steerable(QUESTION, "the value of autonomy", options=OPTIONS)
    dist = method.distributional(QUESTION, OPTIONS)
    assert overton.response and overton.method == name
    assert sum(steer.distribution) == pytest.approx(1.0) and sum(dist.distribution) == pytest.approx(1.0)
    if name == "moe":
        for result in (overton, steer, dist):
            assert result.chosen_community == max(result.selection_scores, key=result.selection_scores.get)
            assert list(result.community_messages) == [result.chosen_community]
            assert "people who speak like alpha" in result.main_prompts[0]
            assert result.community_messages[result.chosen_community] in result.main_prompts[1]
    else:
        assert not overton.community_messages
    if name == "prompting":
        assert "diverse values and perspectives" in overton.main_prompts[0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.overton("  "), "the query is empty"),
        (lambda m: m.distributional(QUESTION, ["Yes"]), "at least two options"),
        (lambda m: m.distributional(QUESTION, ["Yes", "yes"]), "distinct"),
        (lambda m: m.distributional(QUESTION, OPTIONS, weights=[1]), "got 1 weights for 2 communities"),
        (lambda m: m.distributional(QUESTION, OPTIONS, weights=[1, -1]), "non-negative"),
        (lambda m: m.distributional(QUESTION, OPTIONS, weights=[0, 0]), "sum to zero"),
        (lambda m: m.steerable(QUESTION, " "), "attribute is empty"),
        (lambda m: m.pool.subset(["gamma"]), "unknown community 'gamma'"),
    ],
)
def test_bad_input_raises_clear_errors(modular, call, message):
    with pytest.raises(ModPluralError, match=message):
        call(modular)


def test_langchain_main_llm_and_runnable(backend, pool):
    from modplural.integrations.langchain import LangChainBackend, LocalChatModel

    chat = LocalChatModel(backend=backend, max_new_tokens=6, temperature=1.0, seed=1)
    method = ModularPluralism(LangChainBackend(chat, samples=4), pool, SHORT)
    out = method.as_runnable("distributional").invoke({"text": QUESTION, "options": OPTIONS})
    assert sum(out["distribution"]) == pytest.approx(1.0) and 0 <= out["option_mass"] <= 1
    greedy = ModularPluralism(LangChainBackend(LocalChatModel(backend=backend, max_new_tokens=10)), pool, SHORT)
    direct = ModularPluralism(backend, pool, SHORT).overton(QUESTION)
    via_runnable = greedy.as_runnable("overton").invoke(QUESTION)
    assert via_runnable["community_messages"] == direct.community_messages
    assert via_runnable["response"] == direct.response  # same greedy main LLM, through LangChain


def test_parse_label():
    from modplural.integrations.langchain import parse_label

    assert parse_label("The answer is B.", ["A", "B"]) == "B"
    assert parse_label("Absolutely", ["A", "B"]) is None
    assert parse_label("(2) because", ["1", "2"]) == "2"


def test_cli_ask_modes(registry_path, tmp_path):
    common = ["--registry", str(registry_path), "--device", "cpu", "--max-new-tokens", "8", "--message-tokens", "8", "--cache", str(tmp_path / "c.sqlite")]
    overton = run_cli("ask", QUESTION, *common)
    assert overton.returncode == 0, overton.stderr
    assert "Community messages" in overton.stdout and "[alpha]" in overton.stdout and "[beta]" in overton.stdout and "Answer" in overton.stdout
    steer = run_cli("ask", QUESTION, "--mode", "steerable", "--attribute", "the value of autonomy", "--json", *common)
    assert steer.returncode == 0, steer.stderr
    payload = json.loads(steer.stdout)
    assert payload["chosen_community"] in ("alpha", "beta") and payload["response"]
    dist = run_cli("ask", QUESTION, "--mode", "distributional", "--option", "Yes", "--option", "No", "--communities", "beta", *common)
    assert dist.returncode == 0, dist.stderr
    assert "Answer distribution" in dist.stdout and "[alpha]" not in dist.stdout
    vanilla = run_cli("ask", QUESTION, "--method", "vanilla", *common)
    assert vanilla.returncode == 0 and "Community messages" not in vanilla.stdout


def test_cli_ask_bad_input(registry_path):
    common = ["--registry", str(registry_path), "--device", "cpu", "--no-cache"]
    assert_one_line_error(run_cli("ask", QUESTION, "--mode", "steerable", *common), "needs --attribute")
    assert_one_line_error(run_cli("ask", QUESTION, "--mode", "distributional", "--option", "Yes", *common), "at least two")
    assert_one_line_error(run_cli("ask", QUESTION, "--communities", "alpha,gamma", *common), "unknown community 'gamma'")
    assert_one_line_error(run_cli("ask", QUESTION, "--mode", "distributional", "--option", "a", "--option", "b", "--weights", "1,x", *common), "--weights")

