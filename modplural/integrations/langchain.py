"""LangChain in both directions: every LangChain adapter of modplural lives here.

* ``as_runnable(method, mode)``: a method as a LangChain ``Runnable`` (``Method.as_runnable`` calls it).
* ``LangChainBackend``: any langchain-core chat model or LLM as the *main* LLM. Such models expose no
  next-token distribution, so ``option_probs`` falls back to sampling: the model answers ``samples`` times
  and the distribution is the share of answers that name each label; ``mass`` is the share of answers that
  named any label. Configure the model to sample (temperature > 0), or every sample is the same answer.
* ``LocalChatModel``: our local backend (base model or one community adapter) as a LangChain chat model,
  so the integration is exercised with a real model.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Sequence

from modplural.backends.base import Decoding, GenerateRequest, OptionRequest, OptionResult
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


class LangChainBackend:
    """A LangChain chat model or LLM behind the backend protocol (main LLM only: no adapters)."""

    def __init__(self, model: BaseLanguageModel, samples: int = 10) -> None:
        if samples < 1:
            raise ModPluralError(f"samples must be at least 1, got {samples}")
        self.model = model
        self.samples = samples

    def adapter_identity(self, adapter: str | None) -> str:
        self._check(adapter)
        name = getattr(self.model, "model_name", None) or getattr(self.model, "model", None) or type(self.model).__name__
        return f"langchain:{name}"

    def _check(self, adapter: str | None) -> None:
        if adapter is not None:
            raise ModPluralError(f"a LangChain main LLM has no adapters (asked for {adapter!r})")

    def _prompt(self, messages: Sequence[dict] | None, prompt: str | None):
        return _to_langchain(messages) if messages is not None else prompt

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """One answer per request; decoding settings are the LangChain model's own."""
        for r in requests:
            self._check(r.adapter)
        return [_text(o) for o in self.model.batch([self._prompt(r.messages, r.prompt) for r in requests])]

    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """Distributions from ``samples`` sampled answers per request, parsed for the first label they name."""
        inputs = []
        for r in requests:
            self._check(r.adapter)
            instruction = f"\n\nReply with one of {', '.join(r.labels)} only."
            if r.messages is not None:
                messages = [*r.messages[:-1], {**r.messages[-1], "content": r.messages[-1]["content"] + instruction}]
                inputs.append(_to_langchain(messages))
            else:
                inputs.append(r.prompt + instruction + f"\n{r.answer_prefix}")
        answers = self.model.batch([x for x in inputs for _ in range(self.samples)])
        results = []
        for i, r in enumerate(requests):
            counts = dict.fromkeys(r.labels, 0)
            for answer in answers[i * self.samples : (i + 1) * self.samples]:
                label = parse_label(_text(answer), r.labels)
                if label is not None:
                    counts[label] += 1
            parsed = sum(counts.values())
            probs = tuple(c / parsed for c in counts.values()) if parsed else tuple(1 / len(r.labels) for _ in r.labels)
            results.append(OptionResult(r.labels, probs, parsed / self.samples))
        return results


class LocalChatModel(BaseChatModel):
    """A LangChain chat model served by a modplural backend (optionally through one community adapter).

    Each call uses the next seed of a per-instance sequence, so repeated sampled calls differ but a fresh
    instance replays the same answers.
    """

    backend: Any
    adapter: str | None = None
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
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
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])
