"""`python -m modplural` itself, in a fresh interpreter: an answer from the real default model, argv bytes that are not UTF-8, and a
server that drips its reply, which only a process with a time limit can show."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.helpers import assert_one_line_error, run_cli_process
from tests.http_servers import dripping, write_servers_file


def test_ask_generates_with_the_default_model():
    result = run_cli_process("ask", "Should parents be allowed to refuse vaccines for their children?", "--method", "vanilla", "--max-new-tokens", "12", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["main_model"].startswith("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert payload["response"].strip()


def test_cli_question_that_is_not_utf8_is_one_line():
    result = subprocess.run([sys.executable, "-m", "modplural", "ask", b"\xff\xfe"], capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, "the query is not valid UTF-8 text")


def test_cli_with_a_dripping_server_is_one_line_within_the_timeout(tmp_path):
    with dripping(headers_first=True) as url:
        started = time.monotonic()
        result = run_cli_process("ask", "Hi?", "--servers", str(write_servers_file(tmp_path, url + "/v1", timeout=2, retries=0)), "--no-cache",
                         "--communities", "patients", timeout=120)
        elapsed = time.monotonic() - started
    assert_one_line_error(result, f"server {url}/v1 failed after 1 attempts: no answer within 2 s")
    assert elapsed < 60  # python start-up and imports included; the request itself gave up after 2 s

