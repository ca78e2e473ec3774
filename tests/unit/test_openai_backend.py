"""The OpenAI-compatible backend against tiny real HTTP servers on 127.0.0.1 that misbehave on purpose: redirects, echoed or unsendable API
keys, credentials in URLs, bodies that are not UTF-8 JSON, malformed choices, log-probabilities and listings, servers-file numbers."""

from __future__ import annotations

import json
import math
import time

import pytest

from modplural.backends import Decoding, GenerateRequest, OptionRequest
from modplural.backends.label_tokens import from_top_tokens
from modplural.backends.openai_compat import OpenAIBackend, sends_key_in_clear, without_userinfo
from modplural.backends.remote_config import load_servers
from modplural.errors import ModPluralError
from tests.helpers import assert_one_line_error, run_cli
from tests.http_servers import KEY, Answer, dripping, reply, serve, write_servers_file


def completion_logprobs(top: dict) -> dict:
    """A /v1/completions reply whose first token has the alternatives ``top`` (token -> logprob)."""
    return {"choices": [{"text": "A", "logprobs": {"top_logprobs": [top]}}]}


def _backend(url: str, **kwargs) -> OpenAIBackend:
    return OpenAIBackend(url + "/v1", "m", style=kwargs.pop("style", "model"), retries=kwargs.pop("retries", 0), timeout=5, **kwargs)


def _error(backend: OpenAIBackend, call: str = "generate") -> str:
    request = GenerateRequest(prompt="Hi") if call == "generate" else OptionRequest(labels=("A", "B"), prompt="A or B?")
    with pytest.raises(ModPluralError) as info:
        getattr(backend, call)([request])
    message = str(info.value)
    assert "\n" not in message
    return message


def _routes(lora_adapters, models) -> Answer:
    """GET /lora-adapters and /v1/models answer as given (None: 404)."""
    def answer(method: str, path: str) -> tuple[int, dict, bytes]:
        body = lora_adapters if path == "/lora-adapters" else models if path == "/v1/models" else {"choices": [{"text": "ok"}]}
        return (404, {}, b"{}") if body is None else (200, {"Content-Type": "application/json"}, json.dumps(body).encode())
    return answer


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("style", ["model", "auto"])  # auto: the first call is GET /lora-adapters
def test_redirects_are_not_followed_and_the_key_stays_home(status, style):
    with serve(reply({"choices": [{"text": "stolen"}]})) as (target, stolen):
        location = f"{target}/v1/completions"
        with serve(reply(b"", status, Location=location)) as (url, seen):
            message = _error(_backend(url, style=style, api_key=KEY))
    assert stolen == []  # the other port never heard from us: no request, no Authorization header
    assert seen and seen[0]["authorization"] == f"Bearer {KEY}"
    assert f"redirected {seen[0]['method']} {seen[0]['path']} ({status}) to {location}" in message and url in message


def test_a_server_echoing_the_key_in_an_error_does_not_get_it_printed():
    echo = {"error": {"message": f"invalid header Authorization: Bearer {KEY} for this deployment"}}
    with serve(reply(echo, 400)) as (url, _):
        message = _error(_backend(url, api_key=KEY))
    assert KEY not in message and "rejected the request (400): invalid header Authorization: Bearer ***" in message
    with serve(reply(echo, 503)) as (url, seen):  # retried, then reported with the last detail
        message = _error(_backend(url, api_key=KEY, retries=1, backoff=0.01))
    assert len(seen) == 2 and KEY not in message and "HTTP 503: invalid header" in message
    long_echo = {"error": "x" * 190 + f" {KEY}"}  # the key straddles the 200-character cut: no prefix of it survives
    with serve(reply(long_echo, 400)) as (url, _):
        message = _error(_backend(url, api_key=KEY))
    assert KEY[:8] not in message


def test_cli_prints_one_line_without_the_key(tmp_path):
    with serve(reply({"error": {"message": f"bad key {KEY}"}}, 401)) as (url, seen):
        servers = tmp_path / "servers.yaml"
        servers.write_text(json.dumps({"servers": {"s": {"base_url": url + "/v1", "model": "m", "style": "model", "api_key_env": "MODPLURAL_TEST_KEY"}},
                                       "communities": {"patients": "s"}, "main": "s"}))
        result = run_cli("ask", "Hi?", "--servers", str(servers), "--communities", "patients", "--no-cache", env={"MODPLURAL_TEST_KEY": KEY})
    assert seen
    assert_one_line_error(result, f"server {url}/v1 rejected the request (401): bad key ***")
    assert KEY not in result.stderr + result.stdout


@pytest.mark.parametrize("url, clear", [
    ("http://gpu-host:8000/v1", True),
    ("http://10.0.0.7/v1", True),
    ("http://[2001:db8::1]:8000/v1", True),
    ("http://127.0.0.1:8080/v1", False),
    ("http://127.9.9.9/v1", False),
    ("http://localhost:8080/v1", False),
    ("http://[::1]:8080/v1", False),
    ("https://api.example.org/v1", False),
])
def test_which_urls_send_the_key_in_clear(url, clear):
    assert sends_key_in_clear(url, KEY) is clear
    assert sends_key_in_clear(url, None) is False


def test_the_clear_text_warning_comes_once(capsys):
    for _ in range(2):  # constructing a backend contacts nothing
        OpenAIBackend("http://warn-once.invalid:8000/v1", "m", api_key=KEY)
    OpenAIBackend("http://warn-once-no-key.invalid:8000/v1", "m")
    OpenAIBackend("https://warn-once-tls.invalid/v1", "m", api_key=KEY)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("modplural: warning: server http://warn-once.invalid:8000/v1") and KEY not in lines[0]


@pytest.mark.parametrize("body, call, fragment", [
    (b"\xff\xfe{\"choices\": []}", "generate", "answered POST /v1/completions with a body that is not UTF-8 text"),
    (b"<html>busy</html>", "generate", "answered POST /v1/completions with something that is not JSON"),
    ([1, 2], "generate", "answered POST /v1/completions with JSON that is not an object"),
    ("just a string", "option_probs", "with JSON that is not an object"),
    ({}, "generate", "without a 'choices' list"),
    ({"choices": []}, "option_probs", "without a 'choices' list"),
    ({"choices": ["A"]}, "generate", "without a 'choices' list"),
    ({"choices": [{"text": 5}]}, "generate", "without a string choices[0].text"),
    ({"choices": [{"message": {"role": "assistant"}}]}, "generate", "without a string choices[0].message.content"),
    ({"choices": [{"text": "A"}]}, "option_probs", "without choices[0].logprobs.top_logprobs[0]"),
    ({"choices": [{"logprobs": {"top_logprobs": [["A", -0.1]]}}]}, "option_probs", "without choices[0].logprobs.top_logprobs[0]"),
    ({"choices": [{"logprobs": {"content": [{"top_logprobs": [{"token": "A"}]}]}}]}, "option_probs", "without choices[0].logprobs.content[0].top_logprobs"),
])
def test_malformed_replies_are_one_line_errors(body, call, fragment):
    with serve(reply(body)) as (url, _):
        message = _error(_backend(url), call)
    assert message.startswith(f"server {url}/v1 ") and fragment in message


def test_a_body_cut_short_is_retried_then_reported():
    with serve(reply(b'{"choices": [', **{"Content-Length": "100"})) as (url, seen):  # promises 100 bytes, sends 13
        message = _error(_backend(url, retries=1, backoff=0.01))
    assert len(seen) == 2 and message == f"server {url}/v1 failed after 2 attempts: broken HTTP reply (IncompleteRead)"


@pytest.mark.parametrize("logprob", [0.5, 1000, float("nan"), "-0.1", None, True, [-0.1]])
def test_bad_log_probabilities_are_errors(logprob):
    body = json.dumps(completion_logprobs({"A": logprob, "B": -2.0})).encode()  # json writes NaN, as some servers do
    with serve(reply(body)) as (url, _):
        message = _error(_backend(url), "option_probs")
    assert f"server {url}/v1" in message and "bad choices[0].logprobs.top_logprobs[0] entry 'A'" in message


def test_bad_token_in_chat_format_is_an_error():
    chat = {"choices": [{"logprobs": {"content": [{"token": "A", "logprob": -0.1, "top_logprobs": [{"token": 7, "logprob": -0.1}]}]}}]}
    with serve(reply(chat)) as (url, _):
        message = _error(_backend(url), "option_probs")
    assert "bad choices[0].logprobs.content[0].top_logprobs entry 7" in message


@pytest.mark.parametrize("top", [
    [{"token": "A", "logprob": 0.0}, {"token": " A", "logprob": 0.0}],  # two label spellings, both certain: mass 2
    [{"token": "A", "logprob": 0.0}, {"token": "A", "logprob": 0.0}],   # the same token twice
    [{"token": "B", "logprob": -0.1}, {"token": "x", "logprob": -0.1}],  # 0.9 + 0.9, on and off the labels
])
def test_alternatives_worth_more_than_probability_one_are_an_error(top):
    chat = {"choices": [{"logprobs": {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"], "top_logprobs": top}]}}]}
    with serve(reply(chat)) as (url, _):
        message = _error(_backend(url), "option_probs")
    assert f"server {url}/v1 answered POST /v1/completions with choices[0].logprobs.content[0].top_logprobs whose probabilities add up to" in message


def test_a_good_reply_still_gives_the_label_distribution():
    top = {"A": math.log(0.6), " B": math.log(0.2), "\nB": math.log(0.1), "C": math.log(0.05)}
    with serve(reply(completion_logprobs(top))) as (url, seen):
        [result] = _backend(url).option_probs([OptionRequest(labels=("A", "B"), prompt="A or B?")])
    assert result.mass == pytest.approx(0.9) and result.probs == pytest.approx((2 / 3, 1 / 3))
    assert seen[0]["path"] == "/v1/completions" and seen[0]["authorization"] is None
    with serve(reply(completion_logprobs({"A": 1e-9}))) as (url, _):  # a hair above 0 is rounding: probability 1
        [result] = _backend(url).option_probs([OptionRequest(labels=("A", "B"), prompt="A or B?")])
    assert result.mass == 1.0 and result.probs == (1.0, 0.0)


def test_from_top_tokens_checks_its_probabilities():
    with pytest.raises(ModPluralError, match=r"^server X gave the labels A, B a total probability of 1.5, more than 1$"):
        from_top_tokens(("A", "B"), {"A": 0.9, " B": 0.6}, source="server X")
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(ModPluralError, match=r"the model gave token 'A' the probability .*, outside \[0, 1\]"):
            from_top_tokens(("A", "B"), {"A": bad})
    assert from_top_tokens(("A", "B"), {"A": 0.7, "B": 0.3004}).mass == 1.0  # rounding within the tolerance


@pytest.mark.parametrize("models", [[{"id": "patients"}], {"data": {"id": "patients"}}, {"data": ["patients"]}, {"data": [{"id": 3}]}, {"object": "list"}])
def test_a_models_listing_of_the_wrong_shape_is_an_error(models):
    with serve(_routes(None, models)) as (url, _):
        message = _error(_backend(url, style="auto", adapters={"patients": "patients"}))
    assert message == f"server {url}/v1 answered GET /v1/models without a 'data' list of objects with a string 'id'"


@pytest.mark.parametrize("listing", [{"id": 0, "path": "patients.gguf"}, [{"id": "0", "path": "patients.gguf"}], [{"id": 0}], [{"id": True, "path": "p.gguf"}], [3]])
def test_a_lora_listing_of_the_wrong_shape_is_an_error(listing):
    with serve(_routes(listing, None)) as (url, _):
        message = _error(_backend(url, style="auto", adapters={"patients": "patients"}))
    assert message.startswith(f"server {url}/v1 answered GET /lora-adapters with something other than a list of objects")


def test_good_listings_still_route_requests():
    with serve(_routes([{"id": 0, "path": "/x/patients.gguf", "scale": 0.0}], None)) as (url, seen):
        assert _backend(url, style="auto", adapters={"patients": "patients"}).generate([GenerateRequest(prompt="Hi", adapter="patients")]) == ["ok"]
    with serve(_routes(None, {"data": [{"id": "m"}, {"id": "patients"}]})) as (url, _):
        backend = _backend(url, style="auto", adapters={"patients": "patients"})
        assert backend.generate([GenerateRequest(prompt="Hi", adapter="patients")]) == ["ok"] and backend.style == "model"


def test_llama_cpp_requests_sample_as_the_local_engines_and_generated_tokens_are_counted():
    listing = [{"id": 0, "path": "/x/patients.gguf", "scale": 0.0}]

    def answer(method: str, path: str) -> tuple[int, dict, bytes]:
        body = listing if path == "/lora-adapters" else {"choices": [{"text": "ok"}], "usage": {"completion_tokens": 7}}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    sampled = Decoding(max_new_tokens=9, temperature=1.0, top_p=0.9, top_k=50, seed=3)
    with serve(answer) as (url, seen):
        backend = _backend(url, style="auto", adapters={"patients": "patients"})
        backend.generate([GenerateRequest(prompt="Hi", adapter="patients", decoding=sampled)] * 2)
    body = json.loads(seen[-1]["body"])
    assert (body["top_k"], body["min_p"], body["top_p"], body["seed"]) == (50, 0.0, 0.9, 3)
    assert backend.generated_tokens == 14


@pytest.mark.parametrize("key", [KEY + "\n", KEY + "\r", KEY + "\r\nX-Evil: 1", "\n" + KEY, KEY + " tail", KEY + "é"])
def test_a_key_that_cannot_go_in_a_header_is_refused_before_any_request(key, tmp_path):
    with serve(reply({"choices": [{"text": "ok"}]})) as (url, seen):
        servers = write_servers_file(tmp_path, url + "/v1", api_key_env="MODPLURAL_TEST_KEY")
        result = run_cli("ask", "Hi?", "--servers", str(servers), "--communities", "patients", "--no-cache",
                         env={"MODPLURAL_TEST_KEY": key})
        with pytest.raises(ModPluralError) as info:
            OpenAIBackend(url + "/v1", "m", style="model", api_key=key)
    assert seen == []
    assert_one_line_error(result, "environment variable MODPLURAL_TEST_KEY (field 'api_key_env' of server 's' in", "…(masked)",
                          "cannot go in an HTTP header")
    message = str(info.value)
    assert "\n" not in message and "the api_key argument" in message
    for text in (result.stdout + result.stderr, message):
        assert KEY[4:] not in text and "5ecret" not in text and "X-Evil" not in text
    if key.endswith(("\n", "\r")):
        assert "a line break at the end of the file it was read from?" in message


def test_a_base_url_with_credentials_is_refused_without_printing_them(tmp_path):
    with serve(reply({"choices": [{"text": "ok"}]})) as (url, seen):
        port = url.rsplit(":", 1)[1]
        secret_url = f"http://user:secret@127.0.0.1:{port}/v1"
        result = run_cli("ask", "Hi?", "--servers", str(write_servers_file(tmp_path, secret_url)), "--communities", "patients", "--no-cache")
        with pytest.raises(ModPluralError) as info:
            OpenAIBackend(secret_url, "m", style="model")
    assert seen == []
    assert_one_line_error(result, f"base_url http://127.0.0.1:{port}/v1 carries credentials (user:password@)", "server 's'")
    assert "secret" not in result.stderr + result.stdout and "secret" not in str(info.value) and "user" not in str(info.value).split("(")[0]
    for bad in ("ftp://user:secret@host/v1", "http://user:secret@[::1/v1", "http://user:secret@host:99999/v1", "http://user:secret@host/v1\r\n"):
        with pytest.raises(ModPluralError) as info:
            OpenAIBackend(bad, "m")
        assert "secret" not in str(info.value) and "\n" not in str(info.value)
    assert without_userinfo("https://a:b@example.org:8/v1?x=1") == "https://example.org:8/v1?x=1"


def test_a_redirect_to_a_url_with_credentials_does_not_print_them():
    with serve(reply(b"", 302, Location="http://admin:hunter2@10.0.0.9/v1/completions")) as (url, _):
        with pytest.raises(ModPluralError) as info:
            OpenAIBackend(url + "/v1", "m", style="model", retries=0).generate([GenerateRequest(prompt="Hi")])
    assert "hunter2" not in str(info.value) and "to http://10.0.0.9/v1/completions" in str(info.value)


@pytest.mark.parametrize("headers_first", [True, False])
def test_a_dripping_server_cannot_outlast_the_timeout(headers_first):
    with dripping(headers_first) as url:
        started = time.monotonic()
        with pytest.raises(ModPluralError) as info:
            OpenAIBackend(url + "/v1", "m", style="model", timeout=2, retries=1, backoff=0.1).generate([GenerateRequest(prompt="Hi")])
        elapsed = time.monotonic() - started
    assert str(info.value) == f"server {url}/v1 failed after 2 attempts: no answer within 2 s"
    assert 3.9 < elapsed < 10


@pytest.mark.parametrize("field, value, expected", [
    ("timeout", ".nan", "a number of seconds in (0, 86400]"),
    ("timeout", "1.0e+20", "a number of seconds in (0, 86400]"),
    ("timeout", "1.0e+308", "a number of seconds in (0, 86400]"),
    ("timeout", ".inf", "a number of seconds in (0, 86400]"),
    ("timeout", "-1", "a number of seconds in (0, 86400]"),
    ("timeout", "0", "a number of seconds in (0, 86400]"),
    ("timeout", "1e20", "expected a number"),  # YAML 1.1 reads it as a string
    ("backoff", "-1", "a number of seconds in [0, 60]"),
    ("backoff", ".nan", "a number of seconds in [0, 60]"),
    ("backoff", "1000", "a number of seconds in [0, 60]"),
    ("retries", "1000000", "an integer in [0, 20]"),
    ("top_logprobs", "0", "must be at least 1"),
    ("top_logprobs", "-3", "must be at least 1"),
])
def test_servers_file_numbers_out_of_bounds_name_the_file_and_field(field, value, expected, tmp_path):
    path = tmp_path / "servers.yaml"
    path.write_text(f"servers:\n  s:\n    base_url: http://127.0.0.1:9/v1\n    model: m\n    {field}: {value}\n")
    with pytest.raises(ModPluralError) as info:
        load_servers(path)
    message = str(info.value)
    assert message.startswith(f"{path}: server 's': ") and f"field {field!r}" in message and expected in message and "\n" not in message


def test_cli_servers_file_nan_timeout_is_one_line(tmp_path):
    path = tmp_path / "servers.yaml"
    path.write_text("servers:\n  s: {base_url: 'http://127.0.0.1:9/v1', model: m, timeout: .nan}\nmain: s\n")
    assert_one_line_error(run_cli("ask", "Hi?", "--servers", str(path), "--no-cache"),
                          f"{path}: server 's': field 'timeout' must be a number of seconds in (0, 86400] (one day), got nan")


@pytest.mark.parametrize("body, fragment", [
    (b"[" * 100_000 + b"]" * 100_000, "answered POST /v1/completions with JSON nested too deeply to read"),
    (b'{"choices": [{"text": "A", "index": ' + b"7" * 6000 + b"}]}", "answered POST /v1/completions with a number of more than 4300 digits"),
])
def test_replies_json_cannot_read_are_one_line_errors(body, fragment):
    with serve(reply(body)) as (url, _):
        with pytest.raises(ModPluralError) as info:
            OpenAIBackend(url + "/v1", "m", style="model", retries=0).generate([GenerateRequest(prompt="Hi")])
    assert str(info.value) == f"server {url}/v1 {fragment}"

