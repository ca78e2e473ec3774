"""A run directory's own files are written as new files renamed into place: a planted link is refused, never
written through, and nothing outside the run changes (modplural/atomic_files.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from modplural.atomic_files import open_own, own_directory, write_atomic
from modplural.errors import ModPluralError
from tests.helpers import assert_one_line_error, run_cli

SECRET = "the user's own file\n"


# ----------------------------------------------------------------------------- a real finished_run run


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


# ----------------------------------------------------------------------------- damaged distributions
def _damage(run: Path, distribution) -> Path:
    path = run / "predictions" / "vital_distributional_moralchoice__vanilla.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["result"]["distribution"] = distribution
    path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    return path


# ----------------------------------------------------------------------------- damaged files under score, view and report
PREDICTIONS = "predictions/vital_distributional_moralchoice__vanilla.jsonl"


# ----------------------------------------------------------------------------- the helpers (no model)
def test_write_atomic_replaces_a_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == "0o644" and os.listdir(tmp_path) == ["metrics.json"]


def test_write_atomic_never_writes_through_a_link_or_into_a_directory(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET)
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.md").symlink_to(outside)
    with pytest.raises(ModPluralError, match="report.md is a symbolic link: modplural writes its own files only"):
        write_atomic(run / "report.md", "x")
    (run / "view.html").mkdir()
    with pytest.raises(ModPluralError, match="view.html is not a regular file"):
        write_atomic(run / "view.html", "x")
    assert outside.read_text() == SECRET and sorted(os.listdir(run)) == ["report.md", "view.html"]


def test_appending_and_directories_refuse_links(tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_text(SECRET)
    (tmp_path / "x.jsonl").symlink_to(outside)
    with pytest.raises(ModPluralError, match="x.jsonl is a symbolic link"):
        open_own(tmp_path / "x.jsonl", "a")
    (tmp_path / "plots").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ModPluralError, match="plots should be a directory of modplural's files, but is a symbolic link"):
        own_directory(tmp_path / "plots")
    with open_own(tmp_path / "fresh.jsonl", "a") as out:
        out.write("line\n")
    assert (tmp_path / "fresh.jsonl").read_text() == "line\n" and outside.read_text() == SECRET


def test_the_manifest_names_the_machine_s_vector_extensions(run):
    """Int8 products are fast only with VNNI, so runs on different hosts can differ in their main LLM: the manifest
    and the report say which extensions the machine had (the same description training and benchmarks use)."""
    from modplural.provenance import VECTOR_FLAGS, describe_machine

    machine = json.loads((run / "manifest.json").read_text())["machine"]
    cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in cpuinfo.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    assert machine["vector_extensions"] == [f for f in VECTOR_FLAGS if f in flags] and machine["cpu_count"] == os.cpu_count()
    assert ", ".join(machine["vector_extensions"]) in describe_machine(machine)
    assert run_cli("report", str(run)).returncode == 0
    assert f"vector extensions {', '.join(machine['vector_extensions'])}" in (run / "report.md").read_text()


@pytest.mark.parametrize("command, name", [("view", "view.html"), ("report", "report.md"), ("score", "metrics.json"), ("score", "scores.json")])
def test_a_link_where_a_run_file_belongs_is_refused_and_its_target_kept(run, tmp_path, command, name):
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET)
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(outside)
    assert_one_line_error(run_cli(command, str(run)), f"{name} is a symbolic link")
    assert outside.read_text() == SECRET and (run / name).is_symlink()


def test_a_planted_temporary_name_is_never_opened(run, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET)
    (run / ".metrics.json.tmp").symlink_to(outside)  # the fixed temporary name of earlier versions
    result = run_cli("score", str(run))
    assert result.returncode == 0, result.stderr
    assert outside.read_text() == SECRET and (run / "metrics.json").is_file() and not (run / "metrics.json").is_symlink()


def test_plots_as_a_link_or_report_as_a_directory_are_one_line_errors(run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "plots").symlink_to(elsewhere, target_is_directory=True)
    assert_one_line_error(run_cli("report", str(run)), "plots should be a directory of modplural's files")
    assert os.listdir(elsewhere) == []
    (run / "plots").unlink()
    (run / "report.md").mkdir()
    assert_one_line_error(run_cli("report", str(run)), "report.md is not a regular file")


@pytest.mark.parametrize("distribution, fragment", [
    (float("nan"), "must be a list of 2 probabilities"),
    ([float("nan"), 0.5], "'distribution'[0] must be a finite number, got nan"),
    ([float("inf"), 0.0], "must be a finite number, got inf"),
    ([0.0, 0.0], "must be non-negative and not all zero"),
    ([1.5, -0.5], "must be non-negative and not all zero"),
    ([0.2, 0.3, 0.5], "has 3 probabilities for 2 options"),
    (None, "must be a list of 2 probabilities, got NoneType"),
    ("AB", "must be a list of 2 probabilities, got str"),
])
def test_a_damaged_distribution_is_never_scored(run, distribution, fragment):
    before = (run / "metrics.json").read_bytes()
    path = _damage(run, distribution)
    result = run_cli("score", str(run))
    assert_one_line_error(result, f"{path}: item ", fragment)
    assert (run / "metrics.json").read_bytes() == before  # nothing non-finite written


def test_the_view_refuses_a_non_finite_number_instead_of_a_blank_page(run):
    _damage(run, [float("nan"), 0.5])
    assert_one_line_error(run_cli("view", str(run)), "non-finite number")
    assert not (run / "view.html").exists()


@pytest.mark.parametrize("line, fragment", [
    ('{"id": "x", "result": ' + "[" * 100000 + "]" * 100000 + "}", "line 1 is not valid JSON"),
    ('{"id": "x", "result": {"n": ' + "7" * 6000 + "}}", "line 1 is not valid JSON (a number of 6000 digits, beyond any float"),
    ('{"id": "x", "result": null}', "line 1 is not a prediction record"),
])
@pytest.mark.parametrize("command", ["score", "view"])
def test_a_damaged_predictions_line_is_one_line_error(run, command, line, fragment):
    path = run / PREDICTIONS
    path.write_text(line + "\n" + path.read_text())
    assert_one_line_error(run_cli(command, str(run)), str(path), fragment)


@pytest.mark.parametrize("name, content, command, fragment", [
    ("metrics.json", {}, "report", "metrics.json: 'tasks' is missing or not an object"),
    ("metrics.json", {"tasks": {"vital_distributional_moralchoice": {"vanilla": {"js_distance": "bad"}}}}, "report", "is not what modplural writes"),
    ("metrics.json", {"tasks": {"vital_distributional_moralchoice": {}}, "paired": {}}, "report", "is not what modplural writes"),
    ("metrics.json", {"tasks": {"vital_unknown": {"vanilla": {}}}, "paired": {}}, "report", "metrics.json: unknown task 'vital_unknown' in 'tasks'"),
    ("scores.json", {"vital_distributional_moralchoice": ["wrong"]}, "view", "scores.json: vital_distributional_moralchoice / vanilla: expected an object"),
    ("scores.json", {"vital_distributional_moralchoice": {"vanilla": {"x": "bad"}}}, "view", None),
])
def test_damaged_metrics_and_scores_are_one_line_errors(run, name, content, command, fragment):
    (run / name).write_text(json.dumps(content))
    result = run_cli(command, str(run))
    if fragment is None:  # an item absent from scores.json is shown without metrics
        assert result.returncode == 0, result.stderr
    else:
        assert_one_line_error(result, fragment)


@pytest.mark.parametrize("change, command, fragment", [
    (lambda m: m.pop("command"), "report", "KeyError: 'command'"),
    (lambda m: m.update(data="a string"), "score", "'data' must be an object of per-task file records"),
    (lambda m: m.update(protocol="modplural"), "score", "'protocol' must be an object of switches, got str"),
    (lambda m: m.update(protocol="modplural"), "view", "'protocol' must be an object of switches"),
])
def test_a_damaged_manifest_is_a_one_line_error(run, change, command, fragment):
    manifest = json.loads((run / "manifest.json").read_text())
    change(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_cli(command, str(run)), fragment)


def test_a_missing_predictions_file_is_named_by_the_view(run):
    (run / PREDICTIONS).unlink()
    assert_one_line_error(run_cli("view", str(run)), "vital_distributional_moralchoice__vanilla.jsonl is missing")

