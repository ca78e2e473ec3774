"""Issue 32, hardening round two: training never deletes what it did not write and builds its block order lazily;
API keys and URL credentials never leak; a dripping server cannot outlast the timeout; servers-file numbers and
odd JSON replies are one-line errors; `data download` saves only complete VITAL files."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import tracemalloc
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Iterator

import pytest

from modplural.backends import GenerateRequest
from modplural.backends.openai_compat import OpenAIBackend, without_userinfo
from modplural.backends.remote_config import load_servers
from modplural.cli.training import write_card_after_training
from modplural.errors import ModPluralError
from modplural.training.config import load_train_config
from modplural.training.lora import _block_order, _swap_in, check_output_dir, train
from tests.helpers import assert_one_line_error, run_cli, run_cli_process
from tests.test_hardening_http import KEY, reply, serve
from tests.test_hardening_training import write_corpus

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "training" / "configs" / "_smollm2_cpu.yaml"
SHIPPED = REPO / "community_models" / "SmolLM2-135M-Instruct" / "clinicians"


# ----------------------------------------------------------------------------- training: the output directory
def _configs(tmp_path: Path, *communities: str) -> Path:
    """Training configs whose base model cannot load: an error that comes before the model is the one checked."""
    configs = tmp_path / "configs"
    configs.mkdir(parents=True)
    for community in communities:
        (configs / f"{community}.yaml").write_text(f"extends: {RECIPE}\ncommunity: {community}\nbase_model: {tmp_path / 'no-model'}\n")
    return configs


def _train_cli(tmp_path: Path, output_dir: Path):
    corpora = write_corpus(tmp_path / "corpora")
    return run_cli_process("train", "--community", "patients", "--config-dir", str(_configs(tmp_path, "patients")), "--corpus-dir", str(corpora),
                   "--output-dir", str(output_dir), "--device", "cpu", timeout=120)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_train_refuses_a_directory_of_the_users_files_before_the_model_loads(tmp_path):
    thesis = tmp_path / "thesis"
    (thesis / "sub").mkdir(parents=True)
    (thesis / "thesis.txt").write_text("four years of work")
    (thesis / "sub" / "notes.txt").write_text("notes")
    before = _tree(thesis)
    result = _train_cli(tmp_path, thesis)
    assert_one_line_error(result, f"output directory {thesis} is not empty and holds files modplural did not write (sub, thesis.txt)",
                          "choose another --output-dir (or output_dir), or move them away yourself")
    assert _tree(thesis) == before and not thesis.with_name("thesis.old").exists() and not thesis.with_name("thesis.partial").exists()
    assert "no-model" not in result.stderr  # refused before the (unloadable) base model was looked at
    config = load_train_config(_configs(tmp_path / "lib", "patients") / "patients.yaml", corpus_dir=str(tmp_path / "corpora"), output_dir=str(thesis))
    with pytest.raises(ModPluralError, match=f"^output directory {thesis} is not empty"):
        train(config, progress=False)  # the library call checks first too
    assert _tree(thesis) == before


def test_train_refuses_a_file_as_output_dir(tmp_path):
    target = tmp_path / "adapter.bin"
    target.write_bytes(b"precious")
    result = _train_cli(tmp_path, target)
    assert_one_line_error(result, f"output directory {target} is a file, not a directory", "choose another --output-dir")
    assert target.read_bytes() == b"precious" and not target.with_name("adapter.bin.old").exists()


def test_train_all_refuses_one_output_dir_for_two_communities(tmp_path):
    corpora = write_corpus(tmp_path / "corpora")
    result = run_cli_process("train", "--all", "--config-dir", str(_configs(tmp_path, "clinicians", "patients")), "--corpus-dir", str(corpora),
                     "--output-dir", str(tmp_path / "out"), "--device", "cpu", timeout=120)
    assert_one_line_error(result, "communities 'clinicians' and 'patients' would both be written to", "put {community} in --output-dir")


def test_what_training_may_replace(tmp_path):
    check_output_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty")
    ours = shutil.copytree(SHIPPED, tmp_path / "ours")  # a finished adapter as training leaves it
    check_output_dir(ours)
    (ours / "results.csv").write_text("mine")  # our adapter, plus a file of the user's
    with pytest.raises(ModPluralError, match=r"ours is not empty and holds files modplural did not write \(results.csv\); modplural replaces only an adapter"):
        check_output_dir(ours)
    foreign = tmp_path / "foreign"  # a PEFT adapter trained elsewhere: no training manifest
    foreign.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(SHIPPED / name, foreign / name)
    with pytest.raises(ModPluralError, match=r"did not write \(adapter_config.json, adapter_model.safetensors\)"):
        check_output_dir(foreign)
    (tmp_path / "link").symlink_to(SHIPPED)
    with pytest.raises(ModPluralError, match="is a symbolic link"):
        check_output_dir(tmp_path / "link")
    (tmp_path / "run.partial").mkdir()  # the checkpoint directory beside the output is checked too
    (tmp_path / "run.partial" / "draft.md").write_text("mine")
    partial = r"checkpoint directory .*run.partial is not empty and holds files modplural did not write \(draft.md\); modplural replaces only an interrupted"
    with pytest.raises(ModPluralError, match=partial):
        check_output_dir(tmp_path / "run")


def test_our_previous_adapter_is_replaced_whole_and_nothing_beside_it_is_touched(tmp_path):
    final = shutil.copytree(SHIPPED, tmp_path / "patients")
    (tmp_path / "patients.old").mkdir()  # a user's directory under the name the old code removed
    (tmp_path / "patients.old" / "keep.txt").write_text("mine")
    new = tmp_path / "patients.partial" / "adapter"
    new.mkdir(parents=True)
    (new / "training_manifest.json").write_text("{}")
    _swap_in(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["training_manifest.json"] and not new.exists()
    assert (tmp_path / "patients.old" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patients", "patients.old", "patients.partial"]  # nothing left aside


@pytest.mark.slow
def test_retraining_replaces_our_adapter_with_its_card(tmp_path):
    """A real one-step run, twice into the same directory: the second adapter, manifest and card replace the first."""
    corpora = write_corpus(tmp_path / "corpora")
    config = load_train_config(REPO / "training" / "configs" / "patients.yaml", max_steps=1, seq_len=32, batch_size=2, eval_blocks=1,
                               corpus_dir=str(corpora), output_dir=str(tmp_path / "{community}"), device="cpu")
    first_adapter = train(config, progress=False)
    write_card_after_training("patients", first_adapter)  # as `modplural train` does once training returns
    first = json.loads((first_adapter / "training_manifest.json").read_text())["finished"]
    time.sleep(1.1)
    (tmp_path / "patients.old").mkdir()
    (tmp_path / "patients.old" / "keep.txt").write_text("mine")
    adapter = train(config, progress=False)
    assert json.loads((adapter / "training_manifest.json").read_text())["finished"] != first
    assert not (adapter / "README.md").exists()  # the first adapter's card went with it
    write_card_after_training("patients", adapter)
    assert sorted(p.name for p in adapter.iterdir()) == sorted(["README.md", "adapter_config.json", "adapter_model.safetensors", "training_manifest.json"])
    assert "| steps | 1 |" in (adapter / "README.md").read_text()
    assert (tmp_path / "patients.old" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpora", "patients", "patients.old"]


# ----------------------------------------------------------------------------- training: the block order
def _eager_order(n_blocks: int, needed: int, seed: int) -> list[int]:
    """The order as it used to be built, all at once (runs resumed across versions depend on it)."""
    import torch

    order: list[int] = []
    epoch = 0
    while len(order) < needed:
        order.extend(torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist())
        epoch += 1
    return order[:needed]


@pytest.mark.parametrize("n_blocks, seed", [(1, 0), (7, 0), (50, 3)])
def test_the_lazy_block_order_is_the_eager_one(n_blocks, seed):
    eager = _eager_order(n_blocks, 400, seed)
    assert list(islice(_block_order(n_blocks, seed), 400)) == eager
    for start in (0, 1, n_blocks - 1, n_blocks, 3 * n_blocks + 2, 333):  # a resumed run starts mid-sequence
        assert list(islice(_block_order(n_blocks, seed, start), 400 - start)) == eager[start:]


def test_a_huge_step_count_costs_one_epoch():
    next(_block_order(2, 0))  # torch imported before memory is traced
    tracemalloc.start()
    started = time.monotonic()
    steps, per_step = 1_000_000_000, 4
    first = list(islice(_block_order(500, 0), 3 * per_step))
    last = list(islice(_block_order(500, 0, (steps - 1) * per_step), per_step))  # the last step of --max-steps 1000000000
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - started < 5 and peak < 5_000_000
    assert len(first) == 12 and len(last) == 4 and all(0 <= i < 500 for i in first + last)


# ----------------------------------------------------------------------------- API keys and URL credentials
def _servers_file(tmp_path: Path, url: str, **server) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"servers": {"s": {"base_url": url, "model": "m", "style": "model", **server}},
                                "communities": {"patients": "s"}, "main": "s"}))
    return path


@pytest.mark.parametrize("key", [KEY + "\n", KEY + "\r", KEY + "\r\nX-Evil: 1", "\n" + KEY, KEY + " tail", KEY + "é"])
def test_a_key_that_cannot_go_in_a_header_is_refused_before_any_request(key, tmp_path):
    with serve(reply({"choices": [{"text": "ok"}]})) as (url, seen):
        servers = _servers_file(tmp_path, url + "/v1", api_key_env="MODPLURAL_TEST_KEY")
        result = run_cli_process("ask", "Hi?", "--servers", str(servers), "--communities", "patients", "--no-cache",
                         env={"MODPLURAL_TEST_KEY": key}, timeout=120)
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
        result = run_cli_process("ask", "Hi?", "--servers", str(_servers_file(tmp_path, secret_url)), "--communities", "patients", "--no-cache", timeout=120)
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


# ----------------------------------------------------------------------------- a server that drips its reply
@contextmanager
def dripping(headers_first: bool, step: float = 0.5) -> Iterator[str]:
    """A raw HTTP server on 127.0.0.1 that sends its reply one byte every ``step`` seconds (after the headers, or from
    the first byte of the status line on); yields its root URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    body = b'{"choices": [{"text": "' + b"x" * 3000 + b'"}]}'
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if headers_first:
                conn.sendall(head)
            for byte in (body if headers_first else head + body):
                if stop.wait(step):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("headers_first", [True, False])
def test_a_dripping_server_cannot_outlast_the_timeout(headers_first):
    with dripping(headers_first) as url:
        started = time.monotonic()
        with pytest.raises(ModPluralError) as info:
            OpenAIBackend(url + "/v1", "m", style="model", timeout=2, retries=1, backoff=0.1).generate([GenerateRequest(prompt="Hi")])
        elapsed = time.monotonic() - started
    assert str(info.value) == f"server {url}/v1 failed after 2 attempts: no answer within 2 s"
    assert 3.9 < elapsed < 10


def test_cli_with_a_dripping_server_is_one_line_within_the_timeout(tmp_path):
    with dripping(headers_first=True) as url:
        started = time.monotonic()
        result = run_cli_process("ask", "Hi?", "--servers", str(_servers_file(tmp_path, url + "/v1", timeout=2, retries=0)), "--no-cache",
                         "--communities", "patients", timeout=120)
        elapsed = time.monotonic() - started
    assert_one_line_error(result, f"server {url}/v1 failed after 1 attempts: no answer within 2 s")
    assert elapsed < 60  # python start-up and imports included; the request itself gave up after 2 s


# ----------------------------------------------------------------------------- servers-file numbers, odd JSON replies
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
    assert_one_line_error(run_cli_process("ask", "Hi?", "--servers", str(path), "--no-cache", timeout=120),
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


# ----------------------------------------------------------------------------- data download
VITAL_ROWS = json.dumps([{"question": "Is it right?", "label": "A"}]).encode()


def _download(tmp_path: Path, url: str, *extra: str):
    return run_cli_process("data", "download", "vital", "--data-dir", str(tmp_path / "data"), "--base-url", url, *extra, timeout=120)


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "1e9", "soon"])
def test_download_timeout_must_be_a_sensible_number(value, tmp_path):
    result = run_cli_process("data", "download", "vital", "--data-dir", str(tmp_path), f"--timeout={value}", timeout=60)
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
