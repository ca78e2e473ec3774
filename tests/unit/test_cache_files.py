"""Cache files that are damaged or are not files: one line naming the file, and the file kept, before any model loads."""

from __future__ import annotations

from tests.helpers import assert_one_line_error, run_cli


def _ask_with_cache(*args: str, env: dict | None = None):
    return run_cli("ask", "Is fluoride safe?", "--communities", "patients", "--device", "cpu", *args, env=env)


def test_cli_corrupt_message_cache_is_one_line_and_kept(tmp_path):
    cache = tmp_path / "messages.sqlite"
    garbage = b"these bytes are not an SQLite database " * 100
    cache.write_bytes(garbage)
    result = _ask_with_cache("--cache", str(cache))
    assert_one_line_error(result, f"message cache {cache} is unusable", "not a database")
    assert result.returncode == 2
    assert cache.read_bytes() == garbage  # a user's cache is never deleted or rewritten


def test_cli_message_cache_that_is_a_directory_is_one_line(tmp_path):
    assert_one_line_error(_ask_with_cache("--cache", str(tmp_path)), f"message cache {tmp_path} is a directory")
    (tmp_path / "messages.sqlite").mkdir()
    result = _ask_with_cache(env={"MODPLURAL_CACHE": str(tmp_path)})
    assert_one_line_error(result, f"message cache {tmp_path / 'messages.sqlite'} is a directory")
    assert result.returncode == 2

