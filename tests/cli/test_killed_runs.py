"""Runs killed mid-way (SIGKILL of a real `python -m modplural` process, or its server stopped): finished work is kept and the rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modplural.runs.directory import RunDir
from tests.helpers import run_cli, write_registry, write_tiny_run_config


def _records(run: Path) -> dict[str, list[dict]]:
    return {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in sorted(RunDir(run).predictions_dir.glob("*.jsonl"))}


REPO = Path(__file__).resolve().parents[2]


SERVED = ("patients", "clinicians")


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_or_losing_items(adapter_dirs, tmp_path):
    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    config = write_tiny_run_config(tmp_path, registry)
    straight = run_cli("run", str(config), "--out", str(tmp_path / "straight"), "--no-progress")
    assert straight.returncode == 0, straight.stderr
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "modplural", "run", str(config), "--out", str(killed_dir), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    first = RunDir(killed_dir).predictions_path("vital_distributional_moralchoice", "modular")
    deadline = time.time() + 300
    while time.time() < deadline and not (first.is_file() and len(first.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = first.read_text().splitlines()
    assert 2 <= len(before) < 5
    (tmp_path / "regrouped").mkdir()
    regrouped = write_tiny_run_config(tmp_path / "regrouped", registry, chunk_size=3)  # how items are grouped may change on resume
    resumed = run_cli("run", str(regrouped), "--out", str(killed_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert f"vital_distributional_moralchoice / modular: {len(before)} items already done, {5 - len(before)} to run" in resumed.stderr
    assert first.read_text().splitlines()[: len(before)] == before  # finished lines kept as they were
    a, b = _records(tmp_path / "straight"), _records(killed_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert [r["id"] for r in b[name]] == [r["id"] for r in a[name]]  # each item exactly once, same order
        for ra, rb in zip(a[name], b[name]):
            assert ra["result"]["community_messages"] == rb["result"]["community_messages"]
            assert ra["result"]["distribution"] == pytest.approx(rb["result"]["distribution"], abs=1e-4)
    metrics = json.loads((killed_dir / "metrics.json").read_text())
    assert metrics["tasks"]["vital_steerable_vk"]["modular"]["accuracy"]["n"] == 5
    assert "modular - vanilla" in metrics["paired"]["vital_distributional_moralchoice"]
    report = run_cli("report", str(killed_dir))
    assert report.returncode == 0, report.stderr
    text = (killed_dir / "report.md").read_text()
    assert "vital_distributional_moralchoice" in text and "js_distance" in text and "Paired bootstrap" in text
    assert (killed_dir / "plots" / "vital_distributional_moralchoice.png").is_file()
    assert (killed_dir / "plots" / "vital_distributional_moralchoice_js.png").is_file()
    manifest = json.loads((killed_dir / "manifest.json").read_text())
    assert manifest["resumed"] and manifest["data"]["vital_steerable_vk"]["sha256"] and set(manifest["communities"]) == {"alpha", "beta"}


@pytest.mark.slow
def test_killed_cli_run_resumes_and_keeps_the_old_adapter_until_done(corpora, tmp_path):
    """SIGKILL a real `modplural train` mid-run; the finished adapter from before stays intact; the rerun resumes."""
    out, _ = corpora
    args = ["train", "--community", "patients", "--corpus-dir", str(out), "--output-dir", str(tmp_path / "{community}"), "--device", "cpu"]
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "patients.yaml").write_text(
        f"extends: {REPO / 'training' / 'configs' / '_smollm2_cpu.yaml'}\ncommunity: patients\nseq_len: 32\nbatch_size: 2\nwarmup_steps: 1\ncheckpoint_every: 2\neval_blocks: 2\n"
    )
    first = run_cli(*args, "--config-dir", str(config_dir), "--max-steps", "2")
    assert first.returncode == 0, first.stderr
    old_weights = (tmp_path / "patients" / "adapter_model.safetensors").read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "modplural", *args, "--config-dir", str(config_dir), "--max-steps", "40", "--restart"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    state = tmp_path / "patients.partial" / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while not state.is_file() and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.is_file()
    step = json.loads(state.read_text())["step"]
    assert 2 <= step < 40
    assert (tmp_path / "patients" / "adapter_model.safetensors").read_bytes() == old_weights
    rerun = run_cli(*args, "--config-dir", str(config_dir), "--max-steps", "40")
    assert rerun.returncode == 0, rerun.stderr
    manifest = json.loads((tmp_path / "patients" / "training_manifest.json").read_text())
    assert manifest["resumed_from_step"] >= step and manifest["steps"] == 40


def test_server_stopped_mid_run_keeps_finished_items_and_the_rerun_resumes(llama, tmp_path):
    """A real `modplural run` on a remote pool: stop the server after the first items, then restart it and rerun."""
    from modplural.serving import llama_cpp

    servers = tmp_path / "servers.yaml"

    def write_servers(url: str) -> None:
        servers.write_text(json.dumps({
            "servers": {"llama": {"base_url": url, "model": "smollm2", "tokenizer": "default", "retries": 1, "backoff": 0.1, "timeout": 60}},
            "communities": {n: "llama" for n in SERVED}, "main": "llama",
        }))

    # a server of our own for this test, so stopping it leaves the shared one alone
    process, url = llama_cpp.start_server(llama["gguf"], llama["loras"], alias="smollm2")
    write_servers(url)
    config = tmp_path / "run.yaml"
    config.write_text(f"name: remote\ntasks: [vital_distributional_moralchoice]\nmethods: [modular]\ncommunities: [{', '.join(SERVED)}]\n"
                      f"limit: 6\nchunk_size: 1\nmessage_tokens: 6\nmain_tokens: 6\nservers: {servers}\ncache: false\n")
    out = tmp_path / "run"
    args = [sys.executable, "-m", "modplural", "run", str(config), "--out", str(out), "--no-progress"]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    predictions = RunDir(out).predictions_path("vital_distributional_moralchoice", "modular")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not predictions.is_file() or len(predictions.read_text().splitlines()) < 2):
        time.sleep(0.2)
    process.kill()  # the server dies mid-run
    process.wait()
    _, stderr = run.communicate(timeout=300)
    assert run.returncode != 0
    errors = [line for line in stderr.splitlines() if line.startswith("modplural: error:")]
    assert len(errors) == 1 and "cannot connect" in errors[0] and "Traceback" not in stderr, stderr
    kept = predictions.read_text().splitlines()
    assert 2 <= len(kept) < 6 and all(json.loads(line) for line in kept)
    process, url = llama_cpp.start_server(llama["gguf"], llama["loras"], alias="smollm2", port=int(url.rsplit(":", 1)[1].split("/")[0]))
    try:
        rerun = run_cli("run", str(config), "--out", str(out), "--no-progress")
    finally:
        llama_cpp.stop_server(process)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(kept)} items already done, {6 - len(kept)} to run" in rerun.stderr
    assert predictions.read_text().splitlines()[: len(kept)] == kept and len(predictions.read_text().splitlines()) == 6

