"""VITAL in inspect_ai: ``inspect eval`` of a VITAL task with a modplural method on the embedded models, read back with
inspect_ai's log reader, and its numbers against the run directory the runner made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modplural.errors import ModPluralError
from modplural.runs.directory import RunDir
from tests.helpers import SHARED_DATA

DATA = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
TASKS_FILE = Path(__file__).resolve().parents[2] / "modplural" / "integrations" / "inspect_tasks.py"
COMMUNITIES = ["health_news_left", "clinicians"]
TINY = {"limit": 2, "communities": COMMUNITIES, "message_tokens": 6, "main_tokens": 8, "device": "cpu", "cache": False}


def _only_log(log_dir: Path):
    from inspect_ai.log import read_eval_log

    (path,) = log_dir.glob("*.eval")
    return read_eval_log(str(path), resolve_attachments=True)


@pytest.mark.slow
def test_inspect_eval_of_vital_overton_with_modular_logs_the_community_messages(tmp_path):
    out = tmp_path / "run"
    settings = {"method": "modular", **TINY, "out": out, "data_dir": DATA}
    values = [arg for k, v in settings.items() for arg in ("-T", f"{k}={','.join(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else v}")]
    command = [sys.executable, "-m", "inspect_ai", "eval", f"{TASKS_FILE}@vital_overton", "--model", "none", *values,
               "--log-dir", str(tmp_path / "logs"), "--display", "plain"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    log = _only_log(tmp_path / "logs")
    assert log.status == "success" and len(log.samples) == 2
    predictions = {r["id"]: r["result"] for r in RunDir(out).read_predictions("vital_overton", "modular")}
    scores = json.loads((out / "scores.json").read_text())["vital_overton"]["modular"]
    for sample in log.samples:
        logged = sample.metadata["modplural"]
        assert set(logged["community_messages"]) == set(COMMUNITIES) and all(m.strip() for m in logged["community_messages"].values())
        assert logged["community_messages"] == predictions[sample.id]["community_messages"]  # the runner's prediction, as stored
        assert sample.output.completion == predictions[sample.id]["response"] and sample.messages[-1].role == "assistant"
        assert sample.scores["item_metrics"].value == scores[sample.id]
        assert any(e.event == "info" and "Community messages" in str(e.data) for e in sample.events)
    metrics = json.loads((out / "metrics.json").read_text())["tasks"]["vital_overton"]["modular"]
    logged_metrics = log.results.scores[0].metrics
    for name in ("coverage", "share_above_0.33", "sentences_per_response"):
        assert logged_metrics[name].value == pytest.approx(metrics[name]["value"])  # what `modplural run` reports


@pytest.mark.slow
def test_inspect_eval_of_steerable_vk_logs_selections_and_distributions(tmp_path):
    from inspect_ai import eval as inspect_eval

    from modplural.integrations.inspect_tasks import vital_steerable_vk

    out = tmp_path / "run"
    task = vital_steerable_vk(method="modular", data_dir=str(DATA), out=str(out), **TINY)
    (log,) = inspect_eval(task, model=None, log_dir=str(tmp_path / "logs"), display="none")
    assert log.status == "success"
    log = _only_log(tmp_path / "logs")
    for sample in log.samples:
        logged = sample.metadata["modplural"]
        assert set(logged["selection_scores"]) == set(COMMUNITIES) and logged["chosen_community"] in COMMUNITIES
        assert logged["options"] == ["Support", "Oppose", "Either"] and sum(logged["distribution"]) == pytest.approx(1.0)
        assert sample.output.completion.splitlines()[0].startswith("Support: ")
    metrics = json.loads((out / "metrics.json").read_text())["tasks"]["vital_steerable_vk"]["modular"]
    logged_metrics = log.results.scores[0].metrics
    for name in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert logged_metrics[name].value == pytest.approx(metrics[name]["value"])


def test_bad_settings_are_errors_before_any_model_loads(tmp_path):
    from modplural.integrations.inspect_vital import vital_task

    with pytest.raises(ModPluralError, match="unknown method 'oracle'"):
        vital_task("vital_overton", "oracle", data_dir=str(DATA))
    with pytest.raises(ModPluralError, match="unknown field 'colour'"):
        vital_task("vital_overton", "modular", data_dir=str(DATA), colour="red")
    hidden = subprocess.run([sys.executable, "-c", "import sys; sys.modules['inspect_ai'] = None; import modplural.integrations.inspect_vital"],
                            capture_output=True, text=True, timeout=120)
    assert hidden.returncode != 0 and "pip install modplural[inspect]" in hidden.stderr.splitlines()[-1]

