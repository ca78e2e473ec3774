"""``modplural run --track mlflow`` / ``track:`` in a config: a real local MLflow store, read back with MLflow's client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modplural.runs.directory import RunDir
from tests.helpers import SHARED_DATA, assert_one_line_error

DATA = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
TASK = "vital_distributional_moralchoice"
CONFIG = {"name": "tracked", "tasks": [TASK], "methods": ["vanilla", "modular"], "communities": ["health_news_left", "clinicians"],
          "limit": 2, "message_tokens": 6, "main_tokens": 6, "device": "cpu", "cache": False}


def _config(tmp_path: Path, **extra) -> Path:
    path = tmp_path / f"config{len(list(tmp_path.glob('config*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **extra}))
    return path


def _modplural(cwd: Path, *args: str, env: dict | None = None, before: str = "") -> subprocess.CompletedProcess:
    """``modplural ARGS`` in a subprocess run in ``cwd`` (MLflow's default artifact root is ./mlruns), with
    MLFLOW_* variables only from ``env``; ``before``: Python run first (to hide a package)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    code = f"import sys\n{before}\nfrom modplural.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args, "--data-dir", str(DATA)], capture_output=True, text=True, cwd=cwd,
                          env={**clean, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **(env or {})}, timeout=600)


@pytest.mark.slow
def test_a_tracked_run_logs_to_mlflow_and_a_resumed_run_continues_the_same_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    first = _modplural(tmp_path, "run", str(_config(tmp_path)), "--out", str(out), "--no-progress", "--track", "mlflow", env={"MLFLOW_TRACKING_URI": uri})
    assert first.returncode == 0, first.stderr
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("modplural")
    (run,) = client.search_runs([experiment.experiment_id])
    tracking = json.loads((out / "tracking.json").read_text())
    assert tracking["run_id"] == run.info.run_id and tracking["tracking_uri"] == uri and run.info.status == "FINISHED"
    assert run.info.run_name == "run"
    manifest = json.loads((out / "manifest.json").read_text())
    params = run.data.params
    assert json.loads(params["config.tasks"]) == [TASK] and json.loads(params["config.methods"]) == ["vanilla", "modular"]
    assert params["config.limit"] == "2" and params["protocol"] == manifest["protocol"]["name"] and params["protocol.main_tokens"] == "6"
    assert params["main_llm"] == manifest["main_model"] and params["community.clinicians"] == manifest["communities"]["clinicians"]
    assert "config.chunk_size" not in params and run.data.tags["config.chunk_size"] == "auto"  # may change on resume: a tag
    metrics = json.loads((out / "metrics.json").read_text())
    logged = run.data.metrics
    for method in ("vanilla", "modular"):
        estimate = metrics["tasks"][TASK][method]["js_distance"]
        assert logged[f"{TASK}/{method}/js_distance"] == pytest.approx(estimate["value"])
        assert logged[f"{TASK}/{method}/js_distance/ci95_low"] == pytest.approx(estimate["ci95"][0])
    assert logged[f"{TASK}/paired/modular - vanilla/js_distance"] == pytest.approx(metrics["paired"][TASK]["modular - vanilla"]["difference"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "metrics.json", "scores.json", "manifest.json", "plots"} <= artifacts
    report = Path(client.download_artifacts(run.info.run_id, "report.md", str(tmp_path / "download")))
    assert report.read_text() == (out / "report.md").read_text() and TASK in report.read_text()

    # a store other than the recorded one is refused before any model loads, and nothing finished is touched
    predictions = RunDir(out).predictions_path(TASK, "modular")
    kept = predictions.read_text().splitlines(keepends=True)
    elsewhere = _modplural(tmp_path, "run", str(_config(tmp_path)), "--out", str(out), "--track", "mlflow",
                           env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'other.db'}"})
    assert_one_line_error(elsewhere, "tracking.json: this run is tracked as MLflow run", "remove tracking.json to start a new MLflow run")
    assert predictions.read_text() == "".join(kept)

    # resumed (one prediction dropped), tracked by the config's own key this time: the same MLflow run goes on
    predictions.write_text("".join(kept[:-1]))
    resumed = _modplural(tmp_path, "run", str(_config(tmp_path, track={"kind": "mlflow", "uri": uri})), "--out", str(out), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{TASK} / modular: 1 items already done, 1 to run" in resumed.stderr
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert json.loads((out / "tracking.json").read_text())["run_id"] == run.info.run_id
    assert len(client.get_metric_history(run.info.run_id, f"{TASK}/modular/js_distance")) == 2
    assert again.data.params == params

    # a store that fails after the run (here: artifacts that cannot be written) is one line; nothing finished is lost
    client.create_experiment("broken", artifact_location="file:///dev/null/artifacts")
    (out / "tracking.json").unlink()
    finished = {p.name: p.read_text() for p in RunDir(out).predictions_dir.iterdir()}
    broken = _modplural(tmp_path, "run", str(_config(tmp_path, track={"kind": "mlflow", "uri": uri, "experiment": "broken"})), "--out", str(out))
    assert_one_line_error(broken, "the run finished and is scored (metrics.json), but tracking it failed", "run the same command again to log it")
    assert {p.name: p.read_text() for p in RunDir(out).predictions_dir.iterdir()} == finished and (out / "metrics.json").is_file()


def test_tracking_problems_are_one_line_errors_before_any_model_loads(tmp_path):
    cases = [
        (_config(tmp_path, track="wandb"), {}, "", "unknown tracking kind 'wandb': choose mlflow"),
        (_config(tmp_path, track={"kind": "mlflow", "colour": "red"}), {}, "", "track: unknown field 'colour'"),
        (_config(tmp_path, track={"kind": "mlflow", "uri": "https://me:s3cret@mlflow.example"}), {}, "", "holds a password"),
        (_config(tmp_path), {"MLFLOW_TRACKING_URI": "http://me:s3cret@127.0.0.1:9"}, "", "MLFLOW_TRACKING_URI holds a password"),
        (_config(tmp_path), {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}, "",
         "MLflow: cannot reach http://127.0.0.1:9"),
        (_config(tmp_path), {"MLFLOW_TRACKING_URI": "nowhere://store"}, "", "MLflow: cannot use nowhere://store"),
        (_config(tmp_path), {}, "sys.modules['mlflow'] = None", "pip install modplural[mlflow]"),
    ]
    for config, env, before, message in cases:
        out = tmp_path / "out"
        result = _modplural(tmp_path, "run", str(config), "--out", str(out), "--track", "mlflow", env=env, before=before)
        assert_one_line_error(result, message)
        assert "s3cret" not in result.stderr and not out.exists()  # nothing was run: no directory left behind
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()

