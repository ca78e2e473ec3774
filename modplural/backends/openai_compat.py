"""A backend that speaks the OpenAI HTTP API to an existing engine (vLLM, llama.cpp's llama-server, a hosted API).

Communities are LoRA adapters served next to one base model. Two ways of naming them are understood:

* ``model`` style (vLLM ``--enable-lora --lora-modules name=path``): the adapter is a served model name,
  checked against ``GET /v1/models``;
* ``llama.cpp`` style (``llama-server --lora a.gguf --lora b.gguf --lora-init-without-apply``): the request
  carries ``"lora": [{"id": i, "scale": 1}]``; ids come from ``GET /lora-adapters`` by file name.

``style="auto"`` asks the server which one it is. With ``tokenizer`` set (a local model spec), chat messages
are rendered with that tokenizer's chat template and sent to ``/v1/completions``, so the server sees exactly
the prompt the local backend would build; without it ``/v1/chat/completions`` is used.

Answer distributions come from the log-probabilities of the first generated token (``top_logprobs``
alternatives, 20 by default): a label's probability is the sum over returned tokens that spell it
(whitespace stripped). A label outside the returned top-k gets probability 0; ``mass`` reports how much
probability the labels covered, and when no label is among them the result is uniform with ``mass == 0``.
"""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

from modplural.backends.base import GenerateRequest, OptionRequest, OptionResult
from modplural.backends.label_tokens import from_top_tokens
from modplural.errors import ModPluralError

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class OpenAIBackend:
    """``generate`` and ``option_probs`` over HTTP, with bounded concurrency, timeouts and retries with backoff."""

    engine = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        adapters: Mapping[str, str] | None = None,
        style: str = "auto",
        api_key: str | None = None,
        tokenizer: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        top_logprobs: int = 20,
    ) -> None:
        if style not in ("auto", "model", "llama.cpp"):
            raise ModPluralError(f"unknown adapter style {style!r}: choose auto, model or llama.cpp")
        if max_concurrency < 1 or retries < 0 or timeout <= 0 or top_logprobs < 1:
            raise ModPluralError("max_concurrency and top_logprobs must be >= 1, retries >= 0 and timeout > 0")
        if not base_url.startswith(("http://", "https://")):
            raise ModPluralError(f"server base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.served = dict(adapters or {})  # our adapter name -> the server's name for it
        self.style = style
        self.api_key = api_key
        self.max_concurrency, self.timeout, self.retries, self.backoff, self.top_logprobs = max_concurrency, timeout, retries, backoff, top_logprobs
        self._tokenizer_spec = tokenizer
        self._tokenizer = None
        self._lora_ids: dict[str, int] | None = None

    # ----------------------------------------------------------------- protocol
    @property
    def adapters(self) -> list[str]:
        return list(self.served)

    def adapter_identity(self, adapter: str | None) -> str:
        """The served model and adapter (a server gives no weight hashes)."""
        if adapter is None:
            return f"{self.base_url}|{self.model}"
        self._check_adapter(adapter)
        return f"{self.base_url}|{self.model}+{self.served[adapter]}"

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """One completion per request (sent concurrently, at most ``max_concurrency`` at a time), in order."""
        bodies = [self._generate_body(r) for r in requests]
        return [self._text(reply) for reply in self._post_all(bodies)]

    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """Label distributions from the first token's ``top_logprobs``."""
        bodies = [self._option_body(r) for r in requests]
        return [from_top_tokens(r.labels, self._top_logprobs(reply)) for r, reply in zip(requests, self._post_all(bodies))]

    # ----------------------------------------------------------------- request bodies
    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.served:
            raise ModPluralError(f"unknown adapter {adapter!r} for server {self.base_url} (configured: {', '.join(self.served) or 'none'})")

    def _route(self, adapter: str | None) -> dict:
        """The body fields that select the base model or an adapter."""
        self._check_adapter(adapter)
        if self._style() == "model":
            return {"model": self.served[adapter] if adapter else self.model}
        loras = self._llama_lora_ids()
        active = None if adapter is None else loras[self.served[adapter]]
        # every adapter is listed with its scale: an empty list would leave a slot's previous adapters on
        chosen = [{"id": i, "scale": 1.0 if i == active else 0.0} for i in sorted(set(loras.values()))]
        # a slot's cached prompt may have been computed under another adapter: never reuse it
        return {"model": self.model, "lora": chosen, "cache_prompt": False}

    def _prompt_fields(self, messages, prompt: str | None, prefix: str = "") -> tuple[str, dict]:
        if prompt is not None:
            return "/completions", {"prompt": prompt + prefix}
        if self._tokenizer_spec:
            text = self._render(messages)
            return "/completions", {"prompt": text + prefix}
        chat = [dict(m) for m in messages]
        extra = {}
        if prefix:
            chat.append({"role": "assistant", "content": prefix})
            if self._style() == "model":
                extra = {"add_generation_prompt": False, "continue_final_message": True}
        return "/chat/completions", {"messages": chat, **extra}

    def _generate_body(self, r: GenerateRequest) -> tuple[str, dict]:
        path, fields = self._prompt_fields(r.messages, r.prompt)
        d = r.decoding
        body = {**self._route(r.adapter), **fields, "max_tokens": d.max_new_tokens, "temperature": d.temperature, "top_p": d.top_p}
        if d.seed is not None:
            body["seed"] = d.seed
        return path, body

    def _option_body(self, r: OptionRequest) -> tuple[str, dict]:
        path, fields = self._prompt_fields(r.messages, r.prompt, r.answer_prefix)
        body = {**self._route(r.adapter), **fields, "max_tokens": 1, "temperature": 0.0}
        if path == "/chat/completions":
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        else:
            body.update(logprobs=self.top_logprobs)
        return path, body

    def _render(self, messages) -> str:
        if self._tokenizer is None:
            from modplural.models import load_tokenizer

            self._tokenizer = load_tokenizer(self._tokenizer_spec)
        return self._tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)

    # ----------------------------------------------------------------- server discovery
    def _style(self) -> str:
        if self.style == "auto":
            self.style = "llama.cpp" if self._get("/lora-adapters", root=True, missing_ok=True) is not None else "model"
            if self.style == "model":
                self._check_served_models()
        return self.style

    def _check_served_models(self) -> None:
        listed = {m.get("id") for m in (self._get("/models") or {}).get("data", [])}
        missing = [name for name in self.served.values() if name not in listed]
        if missing:
            raise ModPluralError(f"server {self.base_url} serves no adapter {', '.join(map(repr, missing))} (it serves: {', '.join(sorted(map(str, listed)))})")

    def _llama_lora_ids(self) -> dict[str, int]:
        if self._lora_ids is None:
            listed = self._get("/lora-adapters", root=True) or []
            ids = {}
            for entry in listed:
                name = str(entry.get("path", "")).rsplit("/", 1)[-1].removesuffix(".gguf")
                ids[name] = int(entry["id"])
            missing = [name for name in self.served.values() if name not in ids]
            if missing:
                raise ModPluralError(f"server {self.base_url} serves no LoRA adapter {', '.join(map(repr, missing))} (it serves: {', '.join(sorted(ids)) or 'none'})")
            self._lora_ids = ids
        return self._lora_ids

    # ----------------------------------------------------------------- HTTP
    def _url(self, path: str, root: bool = False) -> str:
        base = self.base_url.removesuffix("/v1") if root else self.base_url
        return base + path

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _get(self, path: str, root: bool = False, missing_ok: bool = False):
        try:
            return self._call(urllib.request.Request(self._url(path, root), headers=self._headers()))
        except _NotFound:
            if missing_ok:
                return None
            raise ModPluralError(f"server {self.base_url} has no {path} endpoint") from None

    def _post_all(self, bodies: Sequence[tuple[str, dict]]) -> list[dict]:
        if not bodies:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(bodies))) as pool:
            return list(pool.map(lambda item: self._post(*item), bodies))

    def _post(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        try:
            return self._call(urllib.request.Request(self._url(path), data=data, headers=self._headers(), method="POST"))
        except _NotFound as exc:
            raise ModPluralError(f"server {self.base_url} rejected the request to {path} (404): {exc}") from None

    def _call(self, request: urllib.request.Request):
        """One HTTP call with retries on connection errors, timeouts, 429 and 5xx; other errors are final."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 8.0))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode() or "null")
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code == 404:
                    raise _NotFound(detail) from None
                if exc.code not in RETRY_STATUS:
                    raise ModPluralError(f"server {self.base_url} rejected the request ({exc.code}): {detail}") from None
                last = f"HTTP {exc.code}: {detail}"
            except (socket.timeout, TimeoutError):
                last = f"no answer within {self.timeout:g} s"
            except (urllib.error.URLError, ConnectionError) as exc:
                last = f"cannot connect ({getattr(exc, 'reason', exc)})"
            except json.JSONDecodeError:
                raise ModPluralError(f"server {self.base_url} answered with something that is not JSON") from None
        raise ModPluralError(f"server {self.base_url} failed after {self.retries + 1} attempts: {last}")

    # ----------------------------------------------------------------- replies
    def _text(self, reply: dict) -> str:
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise ModPluralError(f"server {self.base_url} returned no completion text") from None
        return (text or "").strip()

    def _top_logprobs(self, reply: dict) -> dict[str, float]:
        """Token text -> probability of the first generated token's alternatives (chat and legacy formats)."""
        try:
            logprobs = reply["choices"][0]["logprobs"]
            if logprobs.get("content"):
                entries = [(e["token"], e["logprob"]) for e in logprobs["content"][0]["top_logprobs"]]
            else:
                entries = list(logprobs["top_logprobs"][0].items())
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ModPluralError(f"server {self.base_url} returned no log-probabilities (does it support logprobs / top_logprobs?)") from None
        probs: dict[str, float] = {}
        for token, logprob in entries:
            probs[token] = probs.get(token, 0.0) + math.exp(logprob)
        return probs


class _NotFound(Exception):
    pass


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read().decode())
        error = payload.get("error", payload)
        return str(error.get("message", error) if isinstance(error, dict) else error).splitlines()[0][:200]
    except Exception:  # noqa: BLE001 - any unreadable body: fall back to the reason
        return str(exc.reason)
