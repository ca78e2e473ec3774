"""LangChainBackend reads provider log-probabilities (langchain-openai's documented ``response_metadata["logprobs"]``)
like the HTTP backend reads a server's, samples only when a reply has none, and agrees with the real local model.

(On the real model: the parts that need none are in tests/unit/test_langchain_logprobs.py.)"""

from __future__ import annotations

import pytest

from modplural.backends import Decoding
from modplural.backends.base import NextTokenRequest, OptionRequest
from modplural.backends.label_tokens import from_top_tokens
from modplural.communities import load_registry
from modplural.integrations.langchain import LangChainBackend, LocalChatModel
from modplural.methods import ModularPluralism
from modplural.pool import CommunityPool
from tests.helpers import write_registry

LABELS = ("A", "B", "C")


def test_local_chat_model_returns_the_documented_shape(backend):
    reply = LocalChatModel(backend=backend, logprobs=True, top_logprobs=5, max_new_tokens=3).invoke("Say yes or no.")
    [entry] = reply.response_metadata["logprobs"]["content"]
    assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"} and len(entry["top_logprobs"]) == 5
    assert {k: entry[k] for k in ("token", "logprob", "bytes")} == entry["top_logprobs"][0]
    assert entry["bytes"] == list(entry["token"].encode()) and reply.content.startswith(entry["token"].strip())
    assert all(a["logprob"] >= b["logprob"] for a, b in zip(entry["top_logprobs"], entry["top_logprobs"][1:]))
    assert "logprobs" not in LocalChatModel(backend=backend, max_new_tokens=1).invoke("Say yes or no.").response_metadata


def test_langchain_reading_agrees_with_the_backend_top_k(backend):
    question = {"role": "user", "content": "Is the sky blue on a clear day?\nA. Yes\nB. No\nC. Only at night"}
    selection = {"role": "user", "content": "Which comment is kinder?\n\nComment 1: thank you\nComment 2: go away\n\nPlease select one comment number from 1 to 2."}
    requests = [OptionRequest(labels=LABELS, messages=(question,), answer_prefix="Answer:"), OptionRequest(labels=("1", "2"), messages=(selection,), answer_prefix="Comment number:")]
    main = LangChainBackend(LocalChatModel(backend=backend, logprobs=True, max_new_tokens=1))
    via_langchain = main.option_probs(requests)
    assert main.readings == {"logprobs": 2}
    for r, result in zip(requests, via_langchain):
        sent = {"role": "user", "content": f"{r.messages[0]['content']}\n\nReply with one of {', '.join(r.labels)} only.\n{r.answer_prefix}"}
        [top] = backend.next_tokens([NextTokenRequest(messages=(sent,), k=20)])
        summed: dict[str, float] = {}
        for token, prob in top:
            summed[token] = summed.get(token, 0.0) + prob
        direct = from_top_tokens(r.labels, summed)
        exact = backend.option_probs([OptionRequest(labels=r.labels, messages=(sent,))])[0]
        assert result.probs == pytest.approx(direct.probs, abs=1e-6) and result.mass == pytest.approx(direct.mass, abs=1e-6)
        # the full-vocabulary reading sees every label spelling, the top 20 a part of them: same pick, no more mass
        assert 0 < result.mass <= exact.mass + 1e-6 and max(r.labels, key=result.as_dict().get) == max(r.labels, key=exact.as_dict().get)


def test_modular_pluralism_with_a_logprob_main_llm(backend, adapter_dirs, tmp_path):
    pool = CommunityPool(backend, load_registry(write_registry(tmp_path / "registry.yaml", adapter_dirs)).select(),
                         decoding=Decoding(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=0))
    main = LangChainBackend(LocalChatModel(backend=backend, logprobs=True, max_new_tokens=4))
    method = ModularPluralism(main, pool, {"base": "modplural", "main_tokens": 8, "steer_tokens": 8})
    question, options = "Should parents be allowed to refuse vaccines for their children?", ["Yes", "No", "It depends"]
    dist = method.distributional(question, options)
    steer = method.steerable(question, "the value of autonomy", options=options)
    for result in (dist, steer):
        assert sum(result.distribution) == pytest.approx(1.0) and 0 < result.option_mass <= 1
    assert sum(steer.selection_scores.values()) == pytest.approx(1.0) and 0 <= steer.selection_mass <= 1
    assert main.readings["logprobs"] == 4 and "sampled" not in main.readings  # 2 communities + 1 selection + 1 answer

