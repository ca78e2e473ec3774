"""LangChain in both directions: every LangChain adapter of modplural lives here.

* ``as_runnable(method, mode)``: a method as a LangChain ``Runnable`` (``Method.as_runnable`` calls it).
* ``LangChainBackend``: any langchain-core chat model or LLM as the *main* LLM. ``option_probs`` asks the model
  once per request; when the reply carries OpenAI-shaped log-probabilities (``response_metadata["logprobs"]``,
  as ``ChatOpenAI(logprobs=True, top_logprobs=20)`` returns them), the distribution is read from the first
  generated token's ``top_logprobs`` exactly as the HTTP backend reads a server's (``mass`` = probability the
  labels covered). Otherwise it falls back to sampling: the model answers ``samples`` times and the distribution
  is the share of answers that name each label; ``mass`` is the share of answers that named any label. Sampling
  needs a model configured to sample (temperature > 0), or every sample is the same answer.
* ``LocalChatModel``: our local backend (base model or one community adapter) as a LangChain chat model,
  so the integration is exercised with a real model; with ``logprobs=True`` it returns log-probabilities in
  the same shape.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from typing import Any, Sequence

from modplural.backends.base import Decoding, GenerateRequest, NextTokenRequest, OptionRequest, OptionResult, TopTokens
from modplural.backends.label_tokens import LogprobsError, first_token_alternatives, from_top_tokens, likeliest
from modplural.errors import ModPluralError
from modplural.types import check_mode, query_from

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models import BaseChatModel, BaseLanguageModel
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.runnables import Runnable, RunnableLambda
except ImportError as exc:  # pragma: no cover - exercised only without the optional dependency
    raise ModPluralError("LangChain support needs langchain-core: pip install langchain-core") from exc

_ROLE_TO_MESSAGE = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
_MESSAGE_TO_ROLE = {"system": "system", "human": "user", "ai": "assistant"}
_UNLIKELY_LOGPROB = -9999.0  # what OpenAI reports for a probability that rounds to 0 (JSON has no -inf)


def _to_langchain(messages: Sequence[dict]) -> list[BaseMessage]:
    return [_ROLE_TO_MESSAGE[m["role"]](content=m["content"]) for m in messages]


def _text(output: Any) -> str:
    return output.content if hasattr(output, "content") else str(output)


def parse_label(answer: str, labels: Sequence[str]) -> str | None:
    """The first option label that the answer names as a whole word, or None."""
    pattern = r"(?<![A-Za-z0-9])(" + "|".join(re.escape(l) for l in sorted(labels, key=len, reverse=True)) + r")(?![A-Za-z0-9])"
    match = re.search(pattern, answer)
    return match.group(1) if match else None


def as_runnable(method: Any, mode: str = "overton") -> Runnable:
    """``method`` (any ``modplural.methods.Method``) as a ``Runnable``: input a query string or a dict of ``Query``
    fields, output the result dict."""
    mode = check_mode(mode)

    def invoke(value: str | dict) -> dict:
        return method.run(mode, [query_from(value)])[0].to_dict()

    return RunnableLambda(invoke, name=f"{method.name}-{mode}")


def _sampled_distribution(labels: Sequence[str], answers: Sequence[Any]) -> OptionResult:
    """The share of ``answers`` that name each label first; ``mass`` is the share that named any label, and with
    none named the result is uniform."""
    counts = dict.fromkeys(labels, 0)
    for answer in answers:
        label = parse_label(_text(answer), labels)
        if label is not None:
            counts[label] += 1
    parsed = sum(counts.values())
    probs = tuple(c / parsed for c in counts.values()) if parsed else tuple(1 / len(labels) for _ in labels)
    return OptionResult(tuple(labels), probs, parsed / len(answers))


class LangChainBackend:
    """A LangChain chat model or LLM behind the backend protocol (main LLM only: no adapters).

    ``readings`` counts how option distributions were read: ``"logprobs"`` (from the reply's log-probabilities)
    or ``"sampled"`` (the fallback, ``samples`` answers).
    """

    def __init__(self, model: BaseLanguageModel, samples: int = 10) -> None:
        if samples < 1:
            raise ModPluralError(f"samples must be at least 1, got {samples}")
        self.model = model
        self.samples = samples
        self.readings: Counter[str] = Counter()

    @property
    def name(self) -> str:
        """The model's name (``model_name`` or ``model``), else its class name."""
        return getattr(self.model, "model_name", None) or getattr(self.model, "model", None) or type(self.model).__name__

    def adapter_identity(self, adapter: str | None) -> str:
        self._check(adapter)
        return f"langchain:{self.name}"

    def _check(self, adapter: str | None) -> None:
        if adapter is not None:
            raise ModPluralError(f"a LangChain main LLM has no adapters (asked for {adapter!r})")

    def _prompt(self, messages: Sequence[dict] | None, prompt: str | None):
        return _to_langchain(messages) if messages is not None else prompt

    def _ask(self, r: OptionRequest | NextTokenRequest, instruction: str = ""):
        """The request as one model input: ``instruction`` and the answer prefix end its last turn (a generic chat
        model cannot be made to continue an assistant turn)."""
        self._check(r.adapter)
        tail = (f"\n\n{instruction}" if instruction else "") + (f"\n{r.answer_prefix}" if r.answer_prefix else "")
        if r.messages is None:
            return r.prompt + tail
        return _to_langchain([*r.messages[:-1], {**r.messages[-1], "content": r.messages[-1]["content"] + tail}])

    def _alternatives(self, reply: Any) -> dict[str, float] | None:
        """The first generated token's alternatives (text -> probability) from the reply's log-probabilities;
        None when it carries none."""
        logprobs = (getattr(reply, "response_metadata", None) or {}).get("logprobs")
        if logprobs is None:
            return None
        try:
            return first_token_alternatives(logprobs, "response_metadata.logprobs")
        except LogprobsError as exc:
            raise ModPluralError(f"LangChain model {self.name} replied {exc}") from None

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """One answer per request; decoding settings are the LangChain model's own."""
        for r in requests:
            self._check(r.adapter)
        return [_text(o) for o in self.model.batch([self._prompt(r.messages, r.prompt) for r in requests])]

    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """Each request's distribution from the reply's log-probabilities, or else from ``samples`` answers (the
        first reply and ``samples - 1`` more), parsed for the first label they name."""
        inputs = [self._ask(r, f"Reply with one of {', '.join(r.labels)} only.") for r in requests]
        replies = self.model.batch(inputs)
        tops = [self._alternatives(reply) for reply in replies]
        resampled = [x for x, top in zip(inputs, tops) if top is None for _ in range(self.samples - 1)]
        more = iter(self.model.batch(resampled))
        results = []
        for r, reply, top in zip(requests, replies, tops):
            if top is None:
                self.readings["sampled"] += 1
                results.append(_sampled_distribution(r.labels, [reply, *itertools.islice(more, self.samples - 1)]))
            else:
                self.readings["logprobs"] += 1
                results.append(from_top_tokens(r.labels, top, source=f"LangChain model {self.name}"))
        return results

    def next_tokens(self, requests: Sequence[NextTokenRequest]) -> list[TopTokens]:
        """The first generated token's ``top_logprobs`` (at most ``k``), likeliest first; for models that return them."""
        replies = self.model.batch([self._ask(r) for r in requests])
        tops = []
        for r, reply in zip(requests, replies):
            top = self._alternatives(reply)
            if top is None:
                raise ModPluralError(f"LangChain model {self.name} returned no log-probabilities (response_metadata['logprobs']): "
                                     "answer_reading top10 needs them, e.g. ChatOpenAI(logprobs=True, top_logprobs=20)")
            tops.append(likeliest(top, r.k))
        return tops


class LocalChatModel(BaseChatModel):
    """A LangChain chat model served by a modplural backend (optionally through one community adapter).

    Each call uses the next seed of a per-instance sequence, so repeated sampled calls differ but a fresh
    instance replays the same answers.

    With ``logprobs=True`` each reply's ``response_metadata["logprobs"]`` is ``{"content": [entry]}`` in OpenAI's
    chat shape, with one entry, for the first generated position only: its ``top_logprobs`` are the backend's
    ``top_logprobs`` likeliest next tokens after the prompt (``next_tokens``: decoded text, natural-log probability,
    UTF-8 bytes; -9999.0 for a probability that rounds to 0), and its ``token``, ``logprob`` and ``bytes`` repeat the
    likeliest of them: the token that greedy decoding (the default ``temperature=0``) generates. With temperature > 0
    the text may start with another token. The backend needs ``next_tokens`` (the local backends have it).
    """

    backend: Any
    adapter: str | None = None
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    logprobs: bool = False
    top_logprobs: int = 20
    _calls: Any = None

    @property
    def _llm_type(self) -> str:
        return "modplural-local"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self._calls is None:
            self._calls = itertools.count()
        roles = [{"role": _MESSAGE_TO_ROLE.get(m.type, "user"), "content": m.content} for m in messages]
        decoding = Decoding(self.max_new_tokens, self.temperature, self.top_p, self.seed + next(self._calls))
        [text] = self.backend.generate([GenerateRequest(messages=roles, adapter=self.adapter, decoding=decoding)])
        for s in stop or []:
            text = text.split(s)[0]
        metadata = {"logprobs": self._first_token_logprobs(roles)} if self.logprobs else {}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, response_metadata=metadata))])

    def _first_token_logprobs(self, roles: list[dict]) -> dict:
        """OpenAI-shaped ``logprobs`` for the first generated position (see the class docstring)."""
        [top] = self.backend.next_tokens([NextTokenRequest(messages=roles, adapter=self.adapter, k=self.top_logprobs)])
        alternatives = [_token_logprob(token, prob) for token, prob in top]
        return {"content": [{**alternatives[0], "top_logprobs": alternatives}]}


def _token_logprob(token: str, prob: float) -> dict:
    """One token in OpenAI's logprobs shape: text, natural-log probability, UTF-8 bytes."""
    return {"token": token, "logprob": math.log(prob) if prob > 0 else _UNLIKELY_LOGPROB, "bytes": list(token.encode("utf-8"))}
