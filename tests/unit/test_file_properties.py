"""Property tests: malformed task files, experiment configs and registries give ModPluralError naming the file,
or valid objects, never another exception.

Each reader gets (a) every valid document with each single place deleted or replaced by each of a list of nasty
values, exhaustively, and (b) Hypothesis' random documents: up to three random changes, random JSON/YAML values,
random bytes and random text."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modplural.backends.base import Decoding
from modplural.communities import load_registry
from modplural.errors import ModPluralError
from modplural.protocol import MODPLURAL, ORIGINAL
from modplural.runs.config import ExperimentConfig, load_config
from modplural.tasks import TASKS

SETTINGS = settings(max_examples=60, deadline=None)

# Replacements that each broke a reader: NaN/inf, huge ints, bools as numbers, NUL, lone surrogates (from \udc80
# escapes), a trailing newline, empty and nested containers. DELETE removes the place instead.
NASTY = [math.nan, math.inf, -math.inf, 10**400, 1e308, -1, 0, 2, 0.5, True, None, "", " ", "a\x00b", "\udc80", "left\n", [], {}, [[]]]
DELETE = object()
TEXT = st.text(max_size=12) | st.sampled_from(["\udc80", "a\ud800b", "\x00", "Santé", "A", "POLPARTY_Democrat"])
NUMBER = st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([10**400, -(10**400), 1e308])
VALUE = st.recursive(st.none() | st.booleans() | NUMBER | TEXT, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=10)

SURVEY = {"id": 1, "question": "Q?", "options": ["a", "b"], "attribute": "POLPARTY_Democrat", "gold_distribution": [0.25, 0.75]}
VALID_ROWS = {
    "vital_overton": {"id": 1, "input": "A situation", "vrd": ["Autonomy", "Care"], "explanation": ["because", "and because"]},
    "vital_steerable_vk": {"id": 1, "input": "A situation", "vrd": "Autonomy", "label": "A"},
    "vital_steerable_opinionqa": SURVEY,
    "vital_distributional_moralchoice": SURVEY,
    "vital_distributional_globalopinionqa": {**SURVEY, "attribute": "Kenya"},
}
CONFIG = ExperimentConfig(name="prop", tasks=("vital_overton",), methods=("vanilla", "modular"), limit=3, communities=("left",)).as_dict()
ENTRY = {"name": "left", "description": "d", "axis": "a", "base_model": "default", "adapter": "a/left",
         "corpus": {"source": "s", "licence": "CC0", "url": "https://example.org"}, "weight": 1.0}
REGISTRY = {"version": 1, "communities": [ENTRY, {**ENTRY, "name": "right", "weight": 2}]}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place inside nested dicts and lists (not the whole value)."""
    inner = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for key, item in inner for p in [(*prefix, key), *_paths(item, (*prefix, key))]]


def _replace(value: Any, path: tuple, new: Any) -> Any:
    """A copy of ``value`` with the place at ``path`` replaced by ``new`` (or removed, for ``DELETE``)."""
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    if rest:
        copy[head] = _replace(value[head], tuple(rest), new)
    elif new is DELETE:
        del copy[head]
    else:
        copy[head] = new
    return copy


def single_replacements(valid: Any) -> Iterator[Any]:
    """``valid`` with one place deleted or replaced by one nasty value, for every place and value."""
    for path in _paths(valid):
        for new in [DELETE, *NASTY]:
            yield _replace(valid, path, new)


@st.composite
def mutated(draw, valid: Any) -> Any:
    """``valid`` with one to three places deleted or replaced by a nasty or random value."""
    data = valid
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        data = _replace(data, draw(st.sampled_from(paths)), draw(st.sampled_from([DELETE, *NASTY]) | VALUE))
    return data


def random_files(valid: Any, dump: Callable[[Any], str]) -> st.SearchStrategy[bytes]:
    """Mostly a mutated valid document; sometimes any JSON/YAML value, any bytes or any text (lone surrogates included)."""
    anything = VALUE.map(lambda data: dump(data).encode()) | st.binary(max_size=64) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))
    return st.integers(0, 9).flatmap(lambda k: mutated(valid).map(lambda data: dump(data).encode()) if k < 7 else anything)


def _load_task(name: str, path: Path, content: bytes) -> None:
    """Load a task file under both protocols: ModPluralError naming the file, or items that methods and metrics can use."""
    path.write_bytes(content)
    for protocol in (MODPLURAL, ORIGINAL):
        try:
            items, skipped = TASKS[name][0].load(path, protocol)
        except ModPluralError as exc:
            assert str(path) in str(exc)
            return
        assert len({i.id for i in items}) == len(items) and all(isinstance(s, str) for s in skipped)
        for item in items:
            assert item.id
            if item.fixed is not None:  # a kept one-option item: answered without a method
                assert protocol.single_option_items == "keep" and item.query is None and item.fixed["distribution"] == [1.0]
                continue
            assert item.query.text.strip()
            json.dumps([asdict(item.query), item.gold], ensure_ascii=False, allow_nan=False).encode("utf-8")  # as predictions store them
            gold = item.gold.get("distribution")
            if gold is not None:
                assert len(gold) == len(item.query.options) and all(math.isfinite(p) and p >= 0 for p in gold)
                assert sum(gold) == pytest.approx(1.0, abs=1e-3)


def _read(path: Path, content: bytes, reader: Callable[[Path], Any]) -> Any:
    """``reader(path)`` with ``content`` written there; None where it raised a ModPluralError naming the file."""
    path.write_bytes(content)
    try:
        return reader(path)
    except ModPluralError as exc:
        assert str(path) in str(exc)
        return None


def _load_config(path: Path, content: bytes) -> None:
    """Read an experiment config: ModPluralError naming the file, or a config whose decodings and manifest work."""
    config = _read(path, content, load_config)
    if config is None:
        return
    protocol = config.resolved_protocol()
    Decoding(max_new_tokens=protocol.message_tokens, temperature=config.message_temperature, top_p=config.message_top_p, seed=config.seed)
    Decoding(max_new_tokens=protocol.main_tokens)
    json.dumps(config.as_dict(), ensure_ascii=False, allow_nan=False).encode("utf-8")  # what the manifest stores


def _load_registry(path: Path, content: bytes) -> None:
    """Read a registry: ModPluralError naming the file, or communities with usable names, weights and paths."""
    registry = _read(path, content, load_registry)
    if registry is None:
        return
    assert len(set(registry.names)) == len(registry.names)
    for c in registry.communities:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", c.name) and math.isfinite(c.weight) and c.weight >= 0
        c.adapter.exists()  # a usable path (no NUL, no lone surrogate)
        json.dumps([c.name, c.description, c.axis, c.base_model, c.corpus.source, c.corpus.licence, c.corpus.url], ensure_ascii=False).encode("utf-8")


def _check_random_files(files: st.SearchStrategy[bytes], check: Callable[[bytes], None]) -> None:
    @SETTINGS
    @given(files)
    def run(content: bytes) -> None:
        check(content)

    run()


def _rows(name: str) -> list[dict]:
    return [VALID_ROWS[name], {**VALID_ROWS[name], "id": "2"}]


MC = "vital_distributional_moralchoice"
RUN_ROWS = [{**SURVEY, "id": 1, "options": ["a", "b", "c"], "gold_distribution": [0.2, 0.3, 0.5]}, {**SURVEY, "id": 2}]
RESULT = {"mode": "distributional", "method": "vanilla", "options": ["a", "b", "c"], "distribution": [0.1, 0.6, 0.3], "option_mass": 0.9}
SERVERS = {"servers": {"gpu": {"base_url": "http://127.0.0.1:8000/v1", "model": "m", "timeout": 30, "retries": 2, "backoff": 0.5, "max_concurrency": 4}},
           "communities": {"left": {"server": "gpu"}}, "main": "gpu"}


def finished_run(root: Path) -> tuple[Path, Path]:
    """A finished run of vanilla on a two-item MoralChoice file, written as ``modplural run`` writes one (no model):
    (run directory, data directory)."""
    from modplural.provenance import file_sha256
    from modplural.tasks import get_task, load_task

    data = root / "data"
    task_file = data / get_task(MC)[1]
    task_file.parent.mkdir(parents=True)
    task_file.write_text(json.dumps(RUN_ROWS))
    config = ExperimentConfig(name="prop_run", tasks=(MC,), methods=("vanilla",))
    manifest = {"config": config.as_dict(), "protocol": config.resolved_protocol().as_dict(), "command": "modplural run prop.yaml",
                "started": "2026-12-02T00:00:00Z", "finished": "2026-12-02T00:01:00Z", "data": {MC: {"file": str(task_file), "sha256": file_sha256(task_file), "items_run": 2, "left_out": []}},
                "main_model": "m", "communities": {}, "versions": {"torch": "x", "transformers": "y"}, "machine": {"processor": "p", "cpu_count": 2}}
    run = root / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(manifest))
    second = {**RESULT, "options": ["a", "b"], "distribution": [0.5, 0.5]}
    ids = [item.id for item in load_task(MC, data, config.resolved_protocol())[2]]
    lines = [{"id": ids[0], "task": MC, "method": "vanilla", "result": RESULT}, {"id": ids[1], "task": MC, "method": "vanilla", "result": second}]
    (run / "predictions" / f"{MC}__vanilla.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run, data


def _finite_json(path: Path) -> None:
    """A JSON file we wrote: it parses, and holds no NaN or infinity."""
    json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda name: pytest.fail(f"{path} holds {name}"))


def _score(run: Path, data: Path) -> None:
    """Score a run: ModPluralError naming one of its files, or metrics and scores files with finite numbers only."""
    from modplural.runs.plan import read_plan
    from modplural.runs.scoring import score

    try:
        score(read_plan(run, data))
    except ModPluralError as exc:
        assert str(run) in str(exc) or str(data) in str(exc), exc
        return
    _finite_json(run / "metrics.json")
    _finite_json(run / "scores.json")


def _report_and_view(run: Path, data: Path) -> None:
    """Report and view a scored run: ModPluralError naming the run (or the data file it used), or the files written."""
    from modplural.runs.report import write_report
    from modplural.runs.view import write_view

    for write in (lambda: write_report(run), lambda: write_view(run, data)):
        try:
            write()
        except ModPluralError as exc:
            assert str(run) in str(exc) or str(data) in str(exc), exc


def _load_servers(path: Path, content: bytes) -> None:
    """Read a servers file: ModPluralError naming the file, or servers whose numbers are finite and in range."""
    from modplural.backends.remote_config import load_servers

    servers = _read(path, content, load_servers)
    if servers is None:
        return
    for server in servers.servers.values():
        for field in ("timeout", "backoff"):
            value = getattr(server, field)
            assert math.isfinite(value) and value >= 0, (field, value)
        assert isinstance(server.retries, int) and server.retries >= 0


YAML_FILES = {  # reader -> (a valid document, its file name, the check of one file)
    "config": (CONFIG, "experiment.yaml", _load_config),
    "registry": (REGISTRY, "registry.yaml", _load_registry),
    "servers": (SERVERS, "servers.yaml", _load_servers),
}


@pytest.mark.parametrize("name", list(VALID_ROWS))
def test_task_loaders_every_single_nasty_value(name, tmp_path):
    for rows in single_replacements(_rows(name)):
        _load_task(name, tmp_path / "task.json", json.dumps(rows).encode())


@pytest.mark.parametrize("name", list(VALID_ROWS))
def test_task_loaders_random_files(name, tmp_path_factory):
    path = tmp_path_factory.mktemp(name) / "task.json"
    _check_random_files(random_files(_rows(name), json.dumps), lambda content: _load_task(name, path, content))


def test_a_hand_written_run_scores(tmp_path):
    run, data = finished_run(tmp_path)
    _score(run, data)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tasks"][MC]["vanilla"]["js_distance"]["value"] > 0  # the scaffold is a real run, not an error path
    _report_and_view(run, data)
    assert (run / "report.md").is_file() and (run / "view.html").is_file()


@pytest.mark.parametrize("name", ["manifest.json", "metrics.json", "scores.json"])
def test_a_lone_surrogate_escape_in_a_run_file_is_one_error_naming_it(name, tmp_path):
    """Found by the property below: ``{"\\udc80": null}`` parses to a key that no UTF-8 page or report can hold."""
    from modplural.runs.report import write_report
    from modplural.runs.view import write_view

    run, data = finished_run(tmp_path)
    _score(run, data)
    content = json.loads((run / name).read_text())
    content["odd"] = {"LONE": None}
    (run / name).write_text(json.dumps(content).replace("LONE", "\\udc80"))
    with pytest.raises(ModPluralError, match=rf"{name}: not valid JSON \(a lone surrogate escape at odd\.<key>, not text\)"):
        write_report(run) if name == "metrics.json" else write_view(run, data)


def test_damaged_prediction_lines_never_escape_as_another_exception(tmp_path_factory):
    valid = {"id": "1|POLPARTY_Democrat", "task": MC, "method": "vanilla", "result": RESULT}
    lines = random_files(valid, json.dumps) | st.sampled_from([b"", b"{", b"[]", b"null", b"1e999", b'{"id": "1"}', b"9" * 6000, b"[" * 5000])

    @SETTINGS
    @given(lines)
    def run(line: bytes) -> None:
        root = tmp_path_factory.mktemp("predictions")
        path, data = finished_run(root)
        predictions = path / "predictions" / f"{MC}__vanilla.jsonl"
        predictions.write_bytes(line.replace(b"\n", b" ") + b"\n" + predictions.read_bytes().split(b"\n", 1)[1])
        _score(path, data)

    run()


@pytest.mark.parametrize("name", ["metrics.json", "scores.json", "manifest.json"])
def test_damaged_run_files_never_escape_report_or_view(name, tmp_path_factory):
    scaffold = tmp_path_factory.mktemp("scaffold")
    run0, data0 = finished_run(scaffold)
    _score(run0, data0)
    valid = json.loads((run0 / name).read_text())

    @SETTINGS
    @given(random_files(valid, json.dumps))
    def run(content: bytes) -> None:
        root = tmp_path_factory.mktemp("damaged")
        path, data = finished_run(root)
        _score(path, data)
        (path / name).write_bytes(content)
        _report_and_view(path, data)

    run()


@pytest.mark.parametrize("kind", list(YAML_FILES))
def test_yaml_readers_every_single_nasty_value(kind, tmp_path):
    valid, name, check = YAML_FILES[kind]
    for data in single_replacements(valid):
        check(tmp_path / name, yaml.safe_dump(data).encode())


@pytest.mark.parametrize("kind", list(YAML_FILES))
def test_yaml_readers_random_files(kind, tmp_path_factory):
    valid, name, check = YAML_FILES[kind]
    path = tmp_path_factory.mktemp(kind) / name
    _check_random_files(random_files(valid, yaml.safe_dump), lambda content: check(path, content))

