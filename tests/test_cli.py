"""The `modplural` command line on the real default model: the entry point itself in a fresh interpreter (the other
test files call the command line's ``main`` in process), and its one-line errors."""

from __future__ import annotations

import json

from tests.helpers import assert_one_line_error, run_cli, run_cli_process


def test_ask_generates_with_the_default_model():
    result = run_cli_process("ask", "Should parents be allowed to refuse vaccines for their children?", "--method", "vanilla", "--max-new-tokens", "12", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["main_model"].startswith("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert payload["response"].strip()


def test_ask_errors_are_one_line(tmp_path):
    assert_one_line_error(run_cli("ask", "Is fluoride safe?", "--model", str(tmp_path / "missing")), "model path not found")
    assert_one_line_error(run_cli("ask", "   "), "the query is empty")
    assert_one_line_error(run_cli("ask", "Is fluoride safe?", "--dtype", "float8"), "argument --dtype: invalid choice: 'float8'", "see modplural ask --help")
