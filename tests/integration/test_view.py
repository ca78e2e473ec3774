"""``modplural view``: one self-contained HTML page per run, checked in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from modplural.runs.plan import read_plan
from modplural.runs.view import render
from tests.helpers import SHARED_DATA, assert_one_line_error, run_cli, run_config, write_registry

DATA = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
CHROMIUM = shutil.which("chromium")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` browser installed (Debian: apt-get install chromium; .ci/run installs it)")
MORAL, VK = "vital_distributional_moralchoice", "vital_steerable_vk"
HOSTILE = "</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def run(adapter_dirs, tmp_path_factory) -> Path:
    """A real tiny finished run: two tasks of three items, vanilla and modular, two random-adapter communities."""
    root = tmp_path_factory.mktemp("view")
    config = {"name": "tiny_view", "tasks": [MORAL, VK], "methods": ["vanilla", "modular"], "registry": str(write_registry(root / "registry.yaml", adapter_dirs)),
              "limit": 3, "chunk_size": 3, "message_tokens": 6, "main_tokens": 6, "device": "cpu", "cache": False}
    return run_config(root, config)


class Page(HTMLParser):
    """The rendered elements (tag, attributes) and text of a dumped DOM, scripts left out."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        self.feed(re.sub(r"<script\b.*?</script>", "", dom, flags=re.S))
        self.text = "".join(self.texts)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    def attribute(self, name: str) -> list[str]:
        return [attrs[name] for _, attrs in self.elements if name in attrs]


def browse(page: Path, *flags: str, fragment: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *flags, page.as_uri() + fragment],
                          capture_output=True, text=True, timeout=120)


def dump(page: Path, fragment: str = "") -> Page:
    result = browse(page, "--dump-dom", fragment=fragment)
    assert result.returncode == 0, result.stderr
    return Page(result.stdout)


@pytest.mark.slow
@needs_browser
def test_page_renders_items_and_filters_from_the_link(run, tmp_path):
    result = run_cli("view", str(run))
    assert result.returncode == 0, result.stderr
    page = Path(result.stdout.strip())
    assert page == run / "view.html"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.read_text())  # nothing fetched: no CDN
    items = {name: items for name, (_, _, items, _) in read_plan(run, DATA).tasks.items()}

    shown = dump(page)  # no fragment: the first task, every method
    assert all(i.query.text in shown.text for i in items[MORAL])
    assert not any(i.query.text in shown.text for i in items[VK])
    assert sorted(shown.attribute("data-method")) == ["modular"] * 3 + ["vanilla"] * 3
    assert "community messages (2)" in shown.text and "weights" in shown.text and "js_distance" in shown.text

    filtered = dump(page, f"#task={VK}&methods=vanilla")
    assert all(i.query.text in filtered.text for i in items[VK])
    assert not any(i.query.text in filtered.text for i in items[MORAL])
    assert filtered.attribute("data-method") == ["vanilla"] * 3
    assert filtered.attribute("data-item") == [i.id for i in items[VK]]

    js = json.loads((run / "scores.json").read_text())[MORAL]
    beats = {i: js["vanilla"][i]["js_distance"] - js["modular"][i]["js_distance"] for i in js["modular"]}  # lower is better
    ordered = dump(page, f"#task={MORAL}&sort=modular-vanilla")
    assert ordered.attribute("data-item") == sorted(beats, key=beats.get, reverse=True)
    assert "sorted by how much modular beats vanilla" in ordered.text and ordered.text.count("js_distance: modular − vanilla = ") == 3

    shot = tmp_path / "view.png"
    result = browse(page, f"--screenshot={shot}", "--window-size=1200,900")
    assert result.returncode == 0, result.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_browser
def test_model_output_is_shown_as_text_never_markup(tmp_path):
    answer = {"result": {"response": HOSTILE, "options": ["yes", HOSTILE], "distribution": [0.2, 0.8], "community_messages": {"alpha": HOSTILE}},
              "metrics": {"js_distance": 0.1}, "score": 0.1}
    item = {"id": "1", "question": HOSTILE, "context": [HOSTILE], "options": ["yes", HOSTILE], "gold": {"distribution": [0.5, 0.5]}, "answers": {"modular": answer}}
    data = {"name": HOSTILE, "protocol": "modplural", "main_model": "m", "communities": ["alpha"], "finished": "now", "methods": ["modular"],
            "tasks": {"t": {"metric": "js_distance", "higher_is_better": False, "items": [item]}}}
    page = tmp_path / "hostile.html"
    page.write_text(render(data))
    assert page.read_text().count("</script>") == 2  # the two real closing tags only
    shown = dump(page)
    assert not [tag for tag, _ in shown.elements if tag == "img"]
    assert shown.attribute("data-method") == ["modular"]  # the page did render
    assert shown.text.count(HOSTILE) >= 6  # title, question, context, option, response, message: all as text


def test_view_errors_are_one_line(tmp_path):
    assert_one_line_error(run_cli("view", str(tmp_path / "nothing")), "no such run directory")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"config": {"name": "x"}}))
    assert_one_line_error(run_cli("view", str(run)), "the run is unfinished")
    (run / "manifest.json").write_text(json.dumps({"config": {"name": "x"}, "finished": "2026-01-01T00:00:00Z"}))
    assert_one_line_error(run_cli("view", str(run)), "has no scores.json", "modplural score")
    assert_one_line_error(run_cli("view", str(tmp_path)), "has no manifest.json")

