"""LangChainBackend reads provider log-probabilities (langchain-openai's documented ``response_metadata["logprobs"]``)
like the HTTP backend reads a server's, samples only when a reply has none, and agrees with the real local model.

(No model: the parts that need one are in tests/integration/test_langchain_logprobs.py.)"""

from __future__ import annotations

import math
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from modplural.backends.base import NextTokenRequest, OptionRequest
from modplural.errors import ModPluralError
from modplural.integrations.langchain import LangChainBackend

LABELS = ("A", "B", "C")
ASK = ({"role": "user", "content": "Pick one.\nA. yes\nB. no\nC. maybe"},)


class StubChat(BaseChatModel):
    """Answers ``text`` with ``logprobs`` in its response_metadata (left out when ``None``); records every input."""

    model: str = "stub-chat"
    text: str = "A"
    logprobs: Any = None
    inputs: list = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "stub"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.inputs.append([m.content for m in messages])
        metadata = {} if self.logprobs is None else {"logprobs": self.logprobs}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.text, response_metadata=metadata))])


def documented(top: dict[str, float]) -> dict:
    """``response_metadata["logprobs"]`` as langchain-openai returns it for ``logprobs=True, top_logprobs=k``: one entry
    per generated token (token, logprob, bytes, top_logprobs), the first token being the likeliest alternative."""
    alternatives = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top.items()]
    return {"content": [{**alternatives[0], "top_logprobs": alternatives}, {"token": ".", "logprob": -0.5, "bytes": [46], "top_logprobs": []}],
            "refusal": None}


def first(top: list) -> dict:
    """A logprobs object whose first token has the raw alternatives ``top``."""
    return {"content": [{"token": "A", "logprob": -0.1, "bytes": [65], "top_logprobs": top}]}


FIELD = "response_metadata.logprobs.content[0].top_logprobs"


def test_distribution_and_mass_from_logprobs():
    chat = StubChat(logprobs=documented({"A": math.log(0.5), " B": math.log(0.2), "\nB": math.log(0.1), "The": math.log(0.15)}))
    main = LangChainBackend(chat, samples=7)
    requests = [OptionRequest(labels=LABELS, messages=ASK, answer_prefix="Answer:"), OptionRequest(labels=LABELS, prompt="Pick one.")]
    for result in main.option_probs(requests):
        assert result.mass == pytest.approx(0.8) and result.probs == pytest.approx((0.5 / 0.8, 0.3 / 0.8, 0.0))
    assert len(chat.inputs) == 2 and main.readings == {"logprobs": 2}  # one call per request, no sampling
    assert sorted(i[-1] for i in chat.inputs) == ["Pick one.\n\nReply with one of A, B, C only.",
                                                  "Pick one.\nA. yes\nB. no\nC. maybe\n\nReply with one of A, B, C only.\nAnswer:"]


def test_no_label_among_the_alternatives_is_uniform_with_mass_zero():
    [result] = LangChainBackend(StubChat(logprobs=documented({"The": -0.1, "I": -3.0}))).option_probs([OptionRequest(labels=LABELS, messages=ASK)])
    assert result.probs == pytest.approx((1 / 3,) * 3) and result.mass == 0.0


@pytest.mark.parametrize("logprobs, fragment", [
    (first([{"token": "A", "logprob": float("nan")}]), f"with a bad {FIELD} entry 'A': nan"),
    (first([{"token": "A", "logprob": 5.0}]), f"with a bad {FIELD} entry 'A': 5.0"),
    (first([{"token": "A", "logprob": float("-inf")}]), f"with a bad {FIELD} entry 'A': -inf"),
    (first([{"token": "A", "logprob": "-0.1"}]), f"with a bad {FIELD} entry 'A': '-0.1'"),
    (first([{"token": 7, "logprob": -0.1}]), f"with a bad {FIELD} entry 7"),
    (first([{"token": ["A"], "logprob": -0.1}]), f"with a bad {FIELD} entry ['A']"),
    (first([{"token": "A", "logprob": 0.0}, {"token": " A", "logprob": 0.0}]), f"with {FIELD} whose probabilities add up to 2, more than 1"),
    (first([]), f"with an empty {FIELD}"),
    (first([["A", -0.1]]), f"without {FIELD}"),
    ({"content": [{"token": "A", "logprob": -0.1}]}, f"without {FIELD}"),
    ({"content": "A"}, f"without {FIELD}"),
    ("A: -0.1", "without response_metadata.logprobs.top_logprobs[0]"),
])
def test_malformed_logprobs_are_one_line_errors(logprobs, fragment):
    main = LangChainBackend(StubChat(logprobs=logprobs))
    for call in (lambda: main.option_probs([OptionRequest(labels=LABELS, messages=ASK)]), lambda: main.next_tokens([NextTokenRequest(messages=ASK)])):
        with pytest.raises(ModPluralError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message and message.startswith("LangChain model stub-chat replied ") and fragment in message


def test_without_logprobs_the_sampling_estimate_is_the_fallback():
    chat = StubChat(text="I pick B, not A.")
    main = LangChainBackend(chat, samples=4)
    results = main.option_probs([OptionRequest(labels=LABELS, messages=ASK), OptionRequest(labels=("1", "2"), prompt="1 or 2?")])
    assert results[0].probs == (0.0, 1.0, 0.0) and results[0].mass == 1.0
    assert results[1].probs == (0.5, 0.5) and results[1].mass == 0.0  # no label named: uniform
    assert len(chat.inputs) == 8 and main.readings == {"sampled": 2}  # samples calls per request, the first reply included
    llm = FakeListLLM(responses=["C", "nothing", "C"])  # a plain LLM returns strings: no metadata at all
    [result] = LangChainBackend(llm, samples=3).option_probs([OptionRequest(labels=LABELS, prompt="Pick one.")])
    assert result.probs == (0.0, 0.0, 1.0) and result.mass == pytest.approx(2 / 3)


def test_next_tokens_lists_the_alternatives_or_says_why_not():
    main = LangChainBackend(StubChat(logprobs=documented({"B": math.log(0.3), "A": math.log(0.5), "A ": math.log(0.1)})))
    [top] = main.next_tokens([NextTokenRequest(messages=ASK, answer_prefix="Answer:", k=2)])
    assert [t for t, _ in top] == ["A", "B"] and [p for _, p in top] == pytest.approx([0.5, 0.3])
    with pytest.raises(ModPluralError, match=r"^LangChain model stub-chat returned no log-probabilities .*top_logprobs=20\)$"):
        LangChainBackend(StubChat()).next_tokens([NextTokenRequest(prompt="Pick one.")])

