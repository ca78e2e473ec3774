"""`modplural data download` against real HTTP servers on 127.0.0.1: only complete VITAL files are saved, credentials are never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_cli
from tests.http_servers import reply, serve

VITAL_ROWS = json.dumps([{"question": "Is it right?", "label": "A"}]).encode()


def _download(tmp_path: Path, url: str, *extra: str):
    return run_cli("data", "download", "vital", "--data-dir", str(tmp_path / "data"), "--base-url", url, *extra)


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "1e9", "soon"])
def test_download_timeout_must_be_a_sensible_number(value, tmp_path):
    result = run_cli("data", "download", "vital", "--data-dir", str(tmp_path), f"--timeout={value}")
    assert_one_line_error(result, "argument --timeout: must be a number of seconds in (0, 3600]", repr(value))
    assert not (tmp_path / "vital").exists()


def test_download_of_a_body_cut_short_leaves_nothing_behind(tmp_path):
    with serve(reply(VITAL_ROWS[:10], **{"Content-Length": "1000"})) as (url, seen):
        result = _download(tmp_path, url + "/", "--timeout", "5")
    assert len(seen) == 5
    assert_one_line_error(result, "could not download 5 of 5 VITAL files", "the body was cut short (10 bytes of 1000)", "--data-dir")
    assert list((tmp_path / "data" / "vital").iterdir()) == []


@pytest.mark.parametrize("answer, reason", [
    ((200, {"Content-Type": "text/html"}, b"<html><body>Rate limit exceeded</body></html>"), "the server sent an HTML page"),
    ((200, {"Content-Type": "text/plain"}, b"<html><body>Rate limit exceeded</body></html>"), "the body is not a JSON list of objects"),
    ((200, {"Content-Type": "application/json"}, b'{"error": "not found"}'), "the body is not a JSON list of objects"),
    ((200, {"Content-Type": "application/json"}, b"[1, 2]"), "the body is not a JSON list of objects"),
    ((404, {"Content-Type": "text/html"}, b"<html>404</html>"), "HTTP 404"),
])
def test_download_never_saves_what_is_not_a_vital_file(answer, reason, tmp_path):
    with serve(lambda method, path: answer) as (url, _):
        result = _download(tmp_path, url + "/", "--timeout", "5")
    assert_one_line_error(result, "could not download 5 of 5 VITAL files", reason)
    assert "fetched" not in result.stdout and list((tmp_path / "data" / "vital").iterdir()) == []


def test_download_saves_good_files_and_names_the_ones_that_failed(tmp_path):
    def answer(method: str, path: str):
        return (200, {"Content-Type": "text/plain"}, VITAL_ROWS) if "moralchoice" not in path else (200, {"Content-Type": "text/html"}, b"<html/>")

    with serve(answer) as (url, _):
        result = _download(tmp_path, url, "--timeout", "5")  # no trailing slash: the file names still join on
    assert_one_line_error(result, "could not download 1 of 5 VITAL files", "vital_distributional_moralchoice.json: the server sent an HTML page")
    saved = sorted(p.name for p in (tmp_path / "data" / "vital").iterdir())
    assert len(saved) == 4 and "vital_distributional_moralchoice.json" not in saved and result.stdout.count("fetched") == 4
    assert all((tmp_path / "data" / "vital" / name).read_bytes() == VITAL_ROWS for name in saved)
    with serve(reply(VITAL_ROWS)) as (url, seen):
        rerun = _download(tmp_path, url + "/", "--timeout", "5")
    assert rerun.returncode == 0 and len(seen) == 1 and rerun.stdout.count("kept") == 4


def test_download_url_credentials_are_refused_unprinted(tmp_path):
    result = _download(tmp_path, "http://user:secret@127.0.0.1:9/dataset/")
    assert_one_line_error(result, "--base-url: base_url http://127.0.0.1:9/dataset/ carries credentials")
    assert "secret" not in result.stderr


def test_download_without_internet_points_to_data_dir(tmp_path):
    result = run_cli("data", "download", "vital", "--data-dir", str(tmp_path), "--base-url", "http://127.0.0.1:9/", "--timeout", "2")
    assert_one_line_error(result, "--data-dir")

