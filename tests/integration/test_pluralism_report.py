"""experiments/studies/pluralism_report.py: its decisions on hand-made per-item numbers, and its one-line errors.

(On the real model: the parts that need none are in tests/unit/test_pluralism_report.py.)"""

from __future__ import annotations

import json

import pytest

from modplural.runs.directory import RunDir
from tests.helpers import assert_pluralism_report_error, run_pluralism_report


@pytest.mark.slow
def test_a_study_split_by_tasks_is_exported_without_text_and_reported_as_one_variant(tmp_path):
    """Two real tiny runs of one config, each with --tasks, exported and read back as one variant per method."""
    import os

    import yaml

    from tests.helpers import SHARED_DATA, run_cli

    data = os.environ.get("MODPLURAL_DATA", str(SHARED_DATA))
    config = tmp_path / "split.yaml"
    config.write_text(yaml.safe_dump({"name": "split", "tasks": ["vital_overton", "vital_steerable_vk"], "methods": ["vanilla", "modular"],
                                      "communities": ["health_news_left", "clinicians"], "limit": 2, "message_tokens": 6, "main_tokens": 8,
                                      "device": "cpu", "cache": False}))
    exported = {}
    for task in ("vital_overton", "vital_steerable_vk"):
        out = tmp_path / "runs" / task
        result = run_cli("run", str(config), "--tasks", task, "--out", str(out), "--no-progress", "--data-dir", data)
        assert result.returncode == 0, result.stderr
        assert json.loads((out / "manifest.json").read_text())["config"]["tasks"] == [task]
        exported[task] = tmp_path / "exported" / task
        done = run_pluralism_report("--export", str(out), str(exported[task]))
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in exported[task].iterdir()) == ["item_notes.json", "manifest.json", "metrics.json", "scores.json"]
        assert json.loads((exported[task] / "scores.json").read_text()) == json.loads((out / "scores.json").read_text())
        notes = json.loads((exported[task] / "item_notes.json").read_text())[task]
        for method in ("vanilla", "modular"):
            predictions = RunDir(out).read_predictions(task, method)
            assert sorted(notes[method]) == sorted(r["id"] for r in predictions)
            for r in predictions:  # labels and flags only, no model text
                assert set(notes[method][r["id"]]) <= {"chosen", "refusal", "perspectives", "attempts", "registry"}
                if task == "vital_steerable_vk" and method == "modular":
                    assert notes[method][r["id"]]["chosen"] == r["result"]["chosen_community"] in ("health_news_left", "clinicians")
    variants = [f"{m}={exported[t]}:{m}" for m in ("vanilla", "modular") for t in exported]
    out = tmp_path / "report"
    result = run_pluralism_report(*[a for v in variants for a in ("--variant", v)], "--data-dir", data, "--out", str(out))
    assert result.returncode == 0, result.stderr
    payload = json.loads((out / "report.json").read_text())
    assert set(payload["tasks"]) == {"vital_overton", "vital_steerable_vk"}
    assert set(payload["tasks"]["vital_overton"]["variants"]) == {"vanilla", "modular"}
    assert set(payload["overton_refusals"]) == {"vanilla", "modular"} and payload["overton_refusals"]["modular"]["answers"] == 2
    assert sum(payload["selection"]["vital_steerable_vk"]["modular"].values()) == 2
    report = (out / "report.md").read_text()
    assert sum(line.startswith(f"| modular | `{tmp_path / 'exported'}") for line in report.splitlines()) == 2  # a what-was-run row per run
    twice = run_pluralism_report("--variant", f"modular={exported['vital_overton']}:modular", "--variant", f"modular={tmp_path / 'runs' / 'vital_overton'}:modular",
                       "--data-dir", data, "--out", str(tmp_path / "r2"))
    assert_pluralism_report_error(twice, "vital_overton is in both")
    unfinished = run_pluralism_report("--export", str(tmp_path / "exported" / "vital_overton"), str(tmp_path / "again"))
    assert unfinished.returncode == 0  # an exported run exports again (it is finished and scored)
    missing = run_pluralism_report("--export", str(tmp_path / "nowhere"), str(tmp_path / "x"))
    assert_pluralism_report_error(missing)

