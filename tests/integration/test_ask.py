"""`modplural ask` in process on the real default model: its one-line errors for a missing model, an empty query and a
bad option."""

from __future__ import annotations

from tests.helpers import assert_one_line_error, run_cli


def test_ask_errors_are_one_line(tmp_path):
    assert_one_line_error(run_cli("ask", "Is fluoride safe?", "--model", str(tmp_path / "missing")), "model path not found")
    assert_one_line_error(run_cli("ask", "   "), "the query is empty")
    assert_one_line_error(run_cli("ask", "Is fluoride safe?", "--dtype", "float8"), "argument --dtype: invalid choice: 'float8'", "see modplural ask --help")

