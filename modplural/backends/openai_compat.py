"""A backend that speaks the OpenAI HTTP API to an existing engine (vLLM, llama.cpp's llama-server, a hosted API).

Communities are LoRA adapters served next to one base model. Two ways of naming them are understood:

* ``model`` style (vLLM ``--enable-lora --lora-modules name=path``): the adapter is a served model name,
  checked against ``GET /v1/models``;
* ``llama.cpp`` style (``llama-server --lora a.gguf --lora b.gguf --lora-init-without-apply``): the request
  carries ``"lora": [{"id": i, "scale": 1}]``; ids come from ``GET /lora-adapters`` by file name.
  A request there also carries ``top_k`` and ``min_p: 0``, so the server samples as the local engines do rather
  than with its own defaults (top-k 40, min-p 0.05).

``style="auto"`` asks the server which one it is. With ``tokenizer`` set (a local model spec), chat messages
are rendered with that tokenizer's chat template and sent to ``/v1/completions``, so the server sees exactly
the prompt the local backend would build; without it ``/v1/chat/completions`` is used.

Answer distributions come from the log-probabilities of the first generated token (``top_logprobs``
alternatives, 20 by default, read by ``label_tokens.first_token_alternatives`` as for LangChain chat models): a
label's probability is the sum over returned tokens that spell it (whitespace stripped). A label outside the
returned top-k gets probability 0; ``mass`` reports how much probability the labels covered, and when no label
is among them the result is uniform with ``mass == 0``.

Replies are checked: a body that is not UTF-8 JSON, a reply without ``choices``, missing or empty alternatives, a
log-probability that is not a finite number <= 0, alternatives whose probabilities add up to more than 1, or a ``/models`` / ``/lora-adapters``
listing of the wrong shape, JSON nested too deeply or with an over-long number are one-line errors naming the server
and the field. Redirects are never followed (urllib would send the API key along to the new address), the key is
removed from every error message, and a key about to travel over plain ``http://`` to another machine gets a one-line
warning on stderr. A key that cannot go in an HTTP header (a line break read from a file, a control character) and a
``base_url`` carrying ``user:password@`` are refused before any request, their secrets never printed.

``timeout`` bounds each attempt as a whole (connecting, waiting, reading every byte of the reply), so a server that
drips its reply cannot hold a call longer; ``retries`` and ``backoff`` are bounded too (``check_settings``).
"""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

from modplural.backends.base import GenerateRequest, NextTokenRequest, OptionRequest, OptionResult, TopTokens
from modplural.backends.label_tokens import LogprobsError, first_token_alternatives, from_top_tokens, likeliest
from modplural.errors import ModPluralError

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
MAX_TIMEOUT, MAX_BACKOFF, MAX_RETRIES = 86400, 60, 20
_WARNED_CLEAR_TEXT: set[str] = set()  # base URLs already warned about, so the warning comes once per process


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would copy the Authorization header to the new host and turn a POST into a GET."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _DeadlineReader(io.RawIOBase):
    """A socket's reading end on which no read waits past ``deadline`` (a ``time.monotonic()`` value)."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the reply took longer than the timeout")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """A response whose status line, headers and body must all arrive before ``deadline``."""

    def __init__(self, sock: socket.socket, *args, deadline: float, **kwargs) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_DeadlineReader(self.fp.detach(), sock, deadline))


class _Deadline:
    """Connection mixin: the ``timeout`` it is made with is the budget of the whole exchange, not of each socket read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.timeout, (int, float)):
            self.response_class = functools.partial(_DeadlineResponse, deadline=time.monotonic() + self.timeout)


class _DeadlineHTTPConnection(_Deadline, http.client.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_Deadline, http.client.HTTPSConnection):
    pass


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_DeadlineHTTPConnection, req, **kwargs)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_DeadlineHTTPSConnection, req, **kwargs)


def deadline_opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """A urllib opener whose ``open(..., timeout=T)`` gives up once T seconds have passed in all, however the server
    paces its reply (the ``TimeoutError`` comes out of ``open`` or of ``read``)."""
    return urllib.request.build_opener(_DeadlineHTTPHandler, _DeadlineHTTPSHandler, *handlers)


_OPENER = deadline_opener(_NoRedirect)


def check_settings(timeout: float, retries: int, backoff: float, max_concurrency: int = 1, top_logprobs: int = 1) -> None:
    """One-line errors naming the field for a setting out of bounds (NaN and infinities included)."""
    checks = [("timeout", timeout, 0 < timeout <= MAX_TIMEOUT, f"a number of seconds in (0, {MAX_TIMEOUT}] (one day)"),
              ("backoff", backoff, 0 <= backoff <= MAX_BACKOFF, f"a number of seconds in [0, {MAX_BACKOFF}]"),
              ("retries", retries, 0 <= retries <= MAX_RETRIES, f"an integer in [0, {MAX_RETRIES}]"),
              ("max_concurrency", max_concurrency, max_concurrency >= 1, "at least 1"),
              ("top_logprobs", top_logprobs, top_logprobs >= 1, "at least 1")]
    for name, value, ok, wanted in checks:
        if not ok:
            raise ModPluralError(f"field {name!r} must be {wanted}, got {value!r}")


def without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` taken out, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(a URL that cannot be parsed)"
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else url


def check_base_url(url: str) -> str:
    """``url`` without a trailing slash, or a one-line error (secrets never shown) for a URL that is not plain
    ``http(s)://host[:port]/path`` or that carries credentials."""
    shown = without_userinfo(url)
    if any(not " " < c < "\x7f" for c in url):
        raise ModPluralError(f"base_url {shown!r} contains a space, control or non-ASCII character")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ModPluralError(f"base_url {shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModPluralError(f"base_url must start with http:// or https:// and name a host, got {shown!r}")
    if "@" in parts.netloc:
        raise ModPluralError(f"base_url {shown} carries credentials (user:password@): remove them; give the API key with api_key_env")
    return url.rstrip("/")


def check_api_key(key: str, source: str) -> None:
    """A one-line error, showing the key masked, when ``key`` (read from ``source``) cannot go in an HTTP header."""
    bad = next((c for c in key if not " " < c < "\x7f"), None)
    if bad is None:
        return
    shown = key[:3] if len(key) >= 12 and all(" " < c < "\x7f" for c in key[:3]) else ""
    hint = " (a line break at the end of the file it was read from?)" if key.rstrip("\r\n") != key else ""
    raise ModPluralError(f"the API key from {source} ({shown}…(masked)) contains the character {bad!r}, which cannot go in an HTTP header; "
                         f"remove it{hint}")


def sends_key_in_clear(base_url: str, api_key: str | None) -> bool:
    """Whether ``api_key`` would travel unencrypted: plain ``http://`` to a host that is not this machine's loopback."""
    parts = urllib.parse.urlsplit(base_url)
    if not api_key or parts.scheme != "http":
        return False
    host = (parts.hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return True


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
        check_settings(timeout, retries, backoff, max_concurrency, top_logprobs)
        self.base_url = check_base_url(base_url)
        if api_key:
            check_api_key(api_key, f"the api_key argument for server {self.base_url}")
        self.model = model
        self.served = dict(adapters or {})  # our adapter name -> the server's name for it
        self.style = style
        self.api_key = api_key
        self.max_concurrency, self.timeout, self.retries, self.backoff, self.top_logprobs = max_concurrency, timeout, retries, backoff, top_logprobs
        self._tokenizer_spec = tokenizer
        self._tokenizer = None
        self._lora_ids: dict[str, int] | None = None
        self.generated_tokens = 0  # tokens generated so far, as the replies' usage.completion_tokens report them
        if sends_key_in_clear(self.base_url, api_key) and self.base_url not in _WARNED_CLEAR_TEXT:
            _WARNED_CLEAR_TEXT.add(self.base_url)
            print(f"modplural: warning: server {self.base_url}: the API key goes unencrypted over plain http:// to another machine; use https://", file=sys.stderr)

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
        replies = self._post_all(bodies)
        self.generated_tokens += sum(_completion_tokens(reply) for reply in replies)
        return [self._text(path, reply) for (path, _), reply in zip(bodies, replies)]

    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """Label distributions from the first token's ``top_logprobs``."""
        bodies = [self._option_body(r) for r in requests]
        replies = self._post_all(bodies)
        return [from_top_tokens(r.labels, self._top_logprobs(path, reply), source=f"server {self.base_url}") for r, (path, _), reply in zip(requests, bodies, replies)]

    def next_tokens(self, requests: Sequence[NextTokenRequest]) -> list[TopTokens]:
        """The first token's ``top_logprobs`` (at most ``top_logprobs`` of them), likeliest first."""
        bodies = [self._option_body(r) for r in requests]
        replies = self._post_all(bodies)
        tops = [self._top_logprobs(path, reply) for (path, _), reply in zip(bodies, replies)]
        return [likeliest(top, r.k) for r, top in zip(requests, tops)]

    # ----------------------------------------------------------------- request bodies
    def _error(self, message: str) -> ModPluralError:
        """A one-line error naming this server, with the API key (should a server echo it) removed."""
        if self.api_key:
            message = message.replace(self.api_key, "***")
        return ModPluralError(" ".join(f"server {self.base_url} {message}".split()))

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
        d = r.decoding
        if d.no_repeat_ngram:
            raise ModPluralError(f"{self.base_url}: an OpenAI-compatible server cannot ban repeated n-grams (no_repeat_ngram {d.no_repeat_ngram}); "
                                 "flip the protocol switch repetition to none (--switch repetition=none; in a config "
                                 "protocol: {base: modplural, repetition: none})")
        path, fields = self._prompt_fields(r.messages, r.prompt)
        body = {**self._route(r.adapter), **fields, "max_tokens": d.max_new_tokens, "temperature": d.temperature, "top_p": d.top_p}
        if d.seed is not None:
            body["seed"] = d.seed
        if self._style() == "llama.cpp":  # its own sampler defaults (top-k 40, min-p 0.05) would change the distribution
            body.update(top_k=d.top_k, min_p=0.0)
        if d.frequency_penalty:
            body["frequency_penalty"] = d.frequency_penalty
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
        reply = self._get("/models")
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
            raise self._error(f"answered GET {self._server_path('/models')} without a 'data' list of objects with a string 'id'")
        listed = {m["id"] for m in data}
        missing = [name for name in self.served.values() if name not in listed]
        if missing:
            raise self._error(f"serves no adapter {', '.join(map(repr, missing))} (it serves: {', '.join(sorted(listed))})")

    def _llama_lora_ids(self) -> dict[str, int]:
        if self._lora_ids is None:
            listed = self._get("/lora-adapters", root=True)
            if not isinstance(listed, list) or not all(_is_lora_entry(e) for e in listed):
                raise self._error(f"answered GET {self._server_path('/lora-adapters', root=True)} with something other than a list of objects "
                                  "with an integer 'id' and a string 'path'")
            ids = {e["path"].rsplit("/", 1)[-1].removesuffix(".gguf"): e["id"] for e in listed}
            missing = [name for name in self.served.values() if name not in ids]
            if missing:
                raise self._error(f"serves no LoRA adapter {', '.join(map(repr, missing))} (it serves: {', '.join(sorted(ids)) or 'none'})")
            self._lora_ids = ids
        return self._lora_ids

    # ----------------------------------------------------------------- HTTP
    def _url(self, path: str, root: bool = False) -> str:
        base = self.base_url.removesuffix("/v1") if root else self.base_url
        return base + path

    def _server_path(self, path: str, root: bool = False) -> str:
        """The path as the server sees it (``/completions`` -> ``/v1/completions``), for error messages."""
        return urllib.parse.urlsplit(self._url(path, root)).path

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
            raise self._error(f"has no {path} endpoint") from None

    def _post_all(self, bodies: Sequence[tuple[str, dict]]) -> list[dict]:
        if not bodies:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(bodies))) as pool:
            return list(pool.map(lambda item: self._post(*item), bodies))

    def _post(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        try:
            reply = self._call(urllib.request.Request(self._url(path), data=data, headers=self._headers(), method="POST"))
        except _NotFound as exc:
            raise self._error(f"rejected the request to {path} (404): {exc}") from None
        if not isinstance(reply, dict):
            raise self._error(f"answered POST {self._server_path(path)} with JSON that is not an object")
        return reply

    def _call(self, request: urllib.request.Request):
        """One HTTP call with retries on connection errors, timeouts, 429 and 5xx; other errors are final."""
        last = ""
        what = f"{request.get_method()} {request.selector}"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 8.0))
            try:
                with _OPENER.open(request, timeout=self.timeout) as response:
                    return self._decode(response.read(), what)
            except urllib.error.HTTPError as exc:
                if 300 <= exc.code < 400:
                    location = without_userinfo(exc.headers.get("Location", "no Location"))
                    raise self._error(f"redirected {what} ({exc.code}) to {location}: redirects are not "
                                      "followed for API calls (the API key would go along); set base_url to the final address") from None
                detail = _error_detail(exc, self.api_key)
                if exc.code == 404:
                    raise _NotFound(detail) from None
                if exc.code not in RETRY_STATUS:
                    raise self._error(f"rejected the request ({exc.code}): {detail}") from None
                last = f"HTTP {exc.code}: {detail}"
            except (socket.timeout, TimeoutError):
                last = f"no answer within {self.timeout:g} s"
            except (urllib.error.URLError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"no answer within {self.timeout:g} s" if isinstance(reason, TimeoutError) else f"cannot connect ({reason})"
            except http.client.HTTPException as exc:
                last = f"broken HTTP reply ({type(exc).__name__})"
        raise self._error(f"failed after {self.retries + 1} attempts: {last}")

    def _decode(self, body: bytes, what: str):
        """A reply body as JSON (an empty body is null); one-line errors for anything this client cannot read."""
        try:
            return json.loads(body.decode("utf-8") or "null")
        except UnicodeDecodeError:
            raise self._error(f"answered {what} with a body that is not UTF-8 text") from None
        except json.JSONDecodeError:
            raise self._error(f"answered {what} with something that is not JSON") from None
        except RecursionError:
            raise self._error(f"answered {what} with JSON nested too deeply to read") from None
        except ValueError:  # json turns digits into an int: Python refuses more than sys.get_int_max_str_digits()
            raise self._error(f"answered {what} with a number of more than {sys.get_int_max_str_digits()} digits") from None

    # ----------------------------------------------------------------- replies
    def _choice(self, path: str, reply: dict) -> dict:
        """The reply's first choice."""
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._error(f"answered POST {self._server_path(path)} without a 'choices' list holding an object")
        return choices[0]

    def _text(self, path: str, reply: dict) -> str:
        choice = self._choice(path, reply)
        chat = "message" in choice
        holder, key = (choice["message"], "content") if chat else (choice, "text")
        text = holder.get(key, ...) if isinstance(holder, dict) else ...
        if text is not None and not isinstance(text, str):  # absent (...) or not text; null content is an empty answer
            raise self._error(f"answered POST {self._server_path(path)} without a string {'choices[0].message.content' if chat else 'choices[0].text'}")
        return (text or "").strip()

    def _top_logprobs(self, path: str, reply: dict) -> dict[str, float]:
        """Token text -> probability of the first generated token's alternatives (chat and legacy formats)."""
        try:
            return first_token_alternatives(self._choice(path, reply).get("logprobs"), "choices[0].logprobs")
        except LogprobsError as exc:
            raise self._error(f"answered POST {self._server_path(path)} {exc}") from None


class _NotFound(Exception):
    pass


def _is_lora_entry(entry) -> bool:
    """A llama.cpp ``/lora-adapters`` entry: ``{"id": int, "path": str, ...}``."""
    return isinstance(entry, dict) and type(entry.get("id")) is int and isinstance(entry.get("path"), str)


def _completion_tokens(reply: dict) -> int:
    """The reply's ``usage.completion_tokens`` (0 when the server does not say)."""
    usage = reply.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if type(tokens) is int else 0


def _error_detail(exc: urllib.error.HTTPError, secret: str | None) -> str:
    """The first line of a server's error message (the key removed before it is cut to 200 characters)."""
    try:
        payload = json.loads(exc.read().decode())
        error = payload.get("error", payload)
        text = str(error.get("message", error) if isinstance(error, dict) else error).splitlines()[0]
    except Exception:  # noqa: BLE001 - any unreadable body: fall back to the reason
        text = str(exc.reason)
    return (text.replace(secret, "***") if secret else text)[:200]
