"""The OpenAI-compatible backend against a real llama.cpp server on this CPU, serving the embedded model and two
of our community adapters converted to GGUF LoRA with llama.cpp's own converter."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from modplural.backends import Decoding, GenerateRequest, OptionRequest
from modplural.backends.openai_compat import OpenAIBackend
from modplural.errors import ModPluralError
from tests.helpers import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "community_models" / "SmolLM2-135M-Instruct"
SERVED = ("patients", "clinicians")
QUESTIONS = ["Should parents be allowed to refuse vaccines for their children?", "Is a sugar tax fair to poor families?"]


@pytest.fixture(scope="module")
def backend_shipped():
    from modplural.backends.local import LocalBackend

    return LocalBackend("default", adapters={n: SHIPPED / n for n in SERVED}, device="cpu", dtype="float32")


def _remote(llama, **kwargs) -> OpenAIBackend:
    return OpenAIBackend(llama["url"], "smollm2", {n: n for n in SERVED}, tokenizer="default", **kwargs)


def _chat(text: str) -> tuple[dict, ...]:
    return ({"role": "user", "content": text},)


def test_server_serves_base_and_adapters_greedily(llama):
    remote = _remote(llama)
    requests = [GenerateRequest(messages=_chat(q), adapter=a, decoding=Decoding(max_new_tokens=16)) for q in QUESTIONS for a in (None, *SERVED)]
    texts = remote.generate(requests)
    assert all(texts) and remote.style == "llama.cpp"
    assert len(set(texts[:3])) == 3  # the adapter chosen per request changes the text
    assert remote.generate(requests) == texts  # greedy is repeatable over HTTP too


def test_remote_and_local_agree(llama, backend_shipped):
    """Same communities, greedy. The server runs the Q4_1 weights with 8-bit activations, we run them dequantized
    in float32, so tokens may part ways after a while: we require the same first two words in all but one row,
    label masses within the top-k loss, and total variation < 0.1 where the labels carry real mass
    (measured: 0.01-0.04)."""
    remote = _remote(llama)
    requests = [GenerateRequest(messages=_chat(q), adapter=a, decoding=Decoding(max_new_tokens=8)) for q in QUESTIONS for a in (None, *SERVED)]
    local_texts, remote_texts = backend_shipped.generate(requests), remote.generate(requests)
    first_words_equal = sum(l.split()[:2] == r.split()[:2] for l, r in zip(local_texts, remote_texts))
    assert first_words_equal >= len(requests) - 1, list(zip(local_texts, remote_texts))
    options = [OptionRequest(labels=("A", "B", "C"), messages=_chat(f"{q}\nA. Yes\nB. No\nC. It depends\nAnswer with one letter."), adapter=a, answer_prefix="Answer:")
               for q in QUESTIONS for a in (None, *SERVED)]
    # the server reads first tokens only (top-20 log-probabilities): compare with the same reading done locally;
    # the exact local reading adds the spellings after whitespace tokens, so it can only hold more mass
    from modplural.backends.base import NextTokenRequest
    from modplural.backends.label_tokens import from_top_tokens

    tops = backend_shipped.next_tokens([NextTokenRequest(messages=o.messages, adapter=o.adapter, answer_prefix=o.answer_prefix, k=20) for o in options])
    first_token = []
    for o, top in zip(options, tops):
        merged: dict[str, float] = {}
        for text, prob in top:
            merged[text] = merged.get(text, 0.0) + prob
        first_token.append(from_top_tokens(o.labels, merged))
    for exact, first in zip(backend_shipped.option_probs(options), first_token):
        assert exact.mass >= first.mass - 1e-6
    compared = 0
    for l, r in zip(first_token, remote.option_probs(options)):
        assert 0.6 * l.mass <= r.mass <= 1.3 * l.mass + 0.01  # less where a label falls outside the top-20
        if l.mass > 0.2:  # every label is surely among the top 20: the distributions must be close
            assert 0.5 * sum(abs(x - y) for x, y in zip(l.probs, r.probs)) < 0.1  # total variation distance
            compared += 1
    assert compared >= 2


def test_collaboration_modes_through_the_server(llama):
    from modplural.communities import load_registry
    from modplural.methods import ModularPluralism
    from modplural.pool import CommunityPool
    from modplural.types import Query

    remote = _remote(llama)
    pool = CommunityPool(remote, load_registry().select(list(SERVED)), Decoding(max_new_tokens=12))
    method = ModularPluralism(remote, pool, {"main_tokens": 12, "repetition": "none"})  # servers cannot ban n-grams
    [overton] = method.run("overton", [Query(QUESTIONS[0])])
    assert set(overton.community_messages) == set(SERVED) and overton.response
    dist = method.distributional(QUESTIONS[0], ["Yes", "No", "It depends"])
    assert sum(dist.distribution) == pytest.approx(1.0) and 0 < dist.option_mass <= 1


def test_modes_agree_between_local_and_remote(llama, backend_shipped):
    """The distributional and steerable modes on the same two communities, greedy, local vs server: the same
    communities answer, and the aggregate distributions stay close (tolerance as in test_remote_and_local_agree)."""
    from modplural.communities import load_registry
    from modplural.methods import ModularPluralism
    from modplural.pool import CommunityPool
    from modplural.types import Query

    communities = load_registry().select(list(SERVED))
    results = {}
    for name, backend in (("local", backend_shipped), ("remote", _remote(llama))):
        # both read answers from the first token's top alternatives, the only reading a server offers
        method = ModularPluralism(backend, CommunityPool(backend, communities, Decoding(max_new_tokens=8)), {"main_tokens": 8, "answer_reading": "top10", "repetition": "none"})
        queries = [Query(q, options=("Yes", "No", "It depends")) for q in QUESTIONS]
        results[name] = method.run("distributional", queries) + method.run("steerable", [Query(QUESTIONS[0], attribute="the value of autonomy")])
    for local, remote in zip(results["local"], results["remote"]):
        assert set(local.community_messages) == set(remote.community_messages) == set(SERVED)
        if local.distribution is not None:
            assert 0.5 * sum(abs(x - y) for x, y in zip(local.distribution, remote.distribution)) < 0.15
        else:
            assert local.chosen_community in SERVED and remote.chosen_community in SERVED and remote.response


def test_a_pool_mixes_local_and_remote_communities(llama, tmp_path):
    from modplural.assembly import StackSpec, assemble

    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"servers": {"llama": {"base_url": llama["url"], "model": "smollm2", "tokenizer": "default"}},
                                "communities": {"patients": "llama"}}))
    _, pool = assemble(StackSpec(communities=["patients", "clinicians"], servers=path, device="cpu", decoding=Decoding(max_new_tokens=6), cache=False))
    assert pool.backend.adapter_identity("patients").startswith(llama["url"])  # served remotely
    assert "clinicians:" in pool.backend.adapter_identity("clinicians")  # a local adapter, identified by its weights
    [messages] = pool.messages([QUESTIONS[0]])
    assert set(messages) == {"patients", "clinicians"} and all(messages.values())


def test_unknown_adapter_and_timeout_are_clear_errors(llama):
    with pytest.raises(ModPluralError, match="serves no LoRA adapter 'nurses'"):
        OpenAIBackend(llama["url"], "smollm2", {"nurses": "nurses"}).generate([GenerateRequest(prompt="Hi", adapter="nurses")])
    with pytest.raises(ModPluralError, match="unknown adapter 'nurses'"):
        _remote(llama).generate([GenerateRequest(prompt="Hi", adapter="nurses")])
    slow = _remote(llama, timeout=0.05, retries=1, backoff=0.01)
    with pytest.raises(ModPluralError, match=r"failed after 2 attempts: no answer within 0.05 s"):
        slow.generate([GenerateRequest(prompt="Write a long story.", decoding=Decoding(max_new_tokens=400))])


def test_unreachable_server_is_retried_then_reported():
    from modplural.serving.llama_cpp import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    with pytest.raises(ModPluralError, match=r"failed after 3 attempts: cannot connect"):
        OpenAIBackend(url, "m", style="model", retries=2, backoff=0.2).generate([GenerateRequest(prompt="Hi")])
    assert time.monotonic() - start >= 0.2 + 0.4  # backoff between attempts


def test_servers_file_errors(tmp_path):
    bad = tmp_path / "servers.yaml"
    bad.write_text("servers:\n  llama: {base_url: http://x/v1}\n")
    assert_one_line_error(run_cli("ask", "Hi?", "--servers", str(bad), "--no-cache"), "server 'llama'", "missing field 'model'")
    bad.write_text("servers:\n  llama: {base_url: localhost:8080/v1, model: m}\ncommunities:\n  patients: llama\n")
    assert_one_line_error(run_cli("ask", "Hi?", "--servers", str(bad), "--no-cache", "--communities", "patients"), "base_url must start with http://")
    bad.write_text("servers:\n  llama: {base_url: http://x/v1, model: m}\ncommunities:\n  patients: {server: vllm}\n")
    assert_one_line_error(run_cli("ask", "Hi?", "--servers", str(bad), "--no-cache"), "community 'patients' names unknown server 'vllm'")


def test_api_key_comes_from_the_environment(tmp_path, monkeypatch):
    from modplural.assembly import StackSpec, assemble

    path = tmp_path / "servers.yaml"
    path.write_text("servers:\n  hosted: {base_url: https://api.example.org/v1, model: m, api_key_env: MODPLURAL_TEST_KEY}\n"
                    "communities:\n  patients: hosted\nmain: hosted\n")
    spec = StackSpec(communities=["patients"], servers=path, cache=False)
    monkeypatch.delenv("MODPLURAL_TEST_KEY", raising=False)
    with pytest.raises(ModPluralError, match="MODPLURAL_TEST_KEY .* is not set"):
        assemble(spec)
    monkeypatch.setenv("MODPLURAL_TEST_KEY", "sk-test")
    backend, pool = assemble(spec)
    assert pool.backend.routes["patients"] == (backend, "patients")  # the main LLM and the community share one client
    assert backend.api_key == "sk-test" and backend._headers()["Authorization"] == "Bearer sk-test"
    assert backend.adapter_identity("patients") == "https://api.example.org/v1|m+patients"

