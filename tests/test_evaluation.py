"""VITAL tasks, scorers, the resumable runner and reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from modplural.errors import ModPluralError
from modplural.protocol import MODPLURAL
from modplural.runs.directory import RunDir
from modplural.runs.config import load_config
from modplural.runs.generation import Experiment
from modplural.tasks import TASKS, load_task
from modplural.tasks.distributional import DistributionalTask
from modplural.tasks.overton import OvertonTask
from modplural.tasks.steerable import SteerableOpinionQA, opinionqa_framing
from tests.helpers import SHARED_DATA, assert_one_line_error, run_cli, write_registry

DATA = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_file_loads(name):
    task, path, items, skipped = load_task(name, DATA, MODPLURAL)
    assert items and len({i.id for i in items}) == len(items)
    assert all(i.query.text for i in items)
    if task.mode != "overton":
        assert all(i.query.options and len(i.query.options) >= 2 for i in items)


def test_framing_follows_the_original_wording():
    assert opinionqa_framing("POLPARTY_Democrat") == ("the people of Democrat in terms of political party", "In terms of political party, you are Democrat.")
    _, _, items, skipped = load_task("vital_steerable_opinionqa", DATA, MODPLURAL)
    assert skipped and all("single option" in s for s in skipped)  # left out with a note, never silently
    _, _, items, _ = load_task("vital_distributional_globalopinionqa", DATA, MODPLURAL)
    assert items[0].query.persona.startswith("You are from the country of ")


def _write(tmp_path: Path, rows) -> Path:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(rows))
    return path


GOOD = {"question": "Q?", "options": ["a", "b"], "attribute": "POLPARTY_Democrat", "gold_distribution": [0.25, 0.75], "id": 1}


@pytest.mark.parametrize(
    "row, message",
    [
        ({k: v for k, v in GOOD.items() if k != "question"}, "item 1: missing field 'question'"),
        ({**GOOD, "gold_distribution": [0.5, 0.6]}, "item 1: field 'gold_distribution' must be non-negative and sum to 1"),
        ({**GOOD, "gold_distribution": [1.0]}, "item 1: field 'gold_distribution' must hold 2 numbers"),
        ({**GOOD, "options": "a,b"}, "item 1: field 'options' has the wrong type"),
        ({**GOOD, "attribute": "Democrat"}, "item 1: field 'attribute'"),
    ],
)
def test_bad_task_items_name_file_index_and_field(tmp_path, row, message):
    path = _write(tmp_path, [GOOD, row])
    with pytest.raises(ModPluralError, match=message) as info:
        SteerableOpinionQA().load(path, MODPLURAL)
    assert str(path) in str(info.value)


def test_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ModPluralError, match="not valid JSON"):
        DistributionalTask("d", False).load(tmp_path / "bad.json", MODPLURAL)
    with pytest.raises(ModPluralError, match="task file not found"):
        DistributionalTask("d", False).load(tmp_path / "none.json", MODPLURAL)


def test_sentence_splitting():
    from modplural.text import split_sentences

    assert split_sentences("It saves lives. But one dies! Is it fair?\nYes, e.g. sometimes.") == ["It saves lives.", "But one dies!", "Is it fair?", "Yes, e.g. sometimes."]
    assert split_sentences("") == []


def test_nli_scorer_code_path(tiny_nli):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from modplural.scorers import NLIScorer

    scorer = NLIScorer(str(tiny_nli))
    assert scorer.entailment == 2
    premises, hypotheses = ["Saving lives matters.", "Autonomy matters."], ["We divert the trolley.", "One person dies.", "Consent is absent."]
    scores = scorer.score(premises, hypotheses)
    assert scores.shape == (2, 3) and ((0 <= scores) & (scores <= 1)).all()
    tok, model = AutoTokenizer.from_pretrained(tiny_nli), AutoModelForSequenceClassification.from_pretrained(tiny_nli).eval()
    with torch.no_grad():
        direct = torch.softmax(model(**tok(premises[1], hypotheses[2], return_tensors="pt")).logits[0], -1)[2].item()
    assert scores[1, 2] == pytest.approx(direct, abs=1e-5)
    task = OvertonTask()
    item = task.parse(Path("x.json"), 0, {"vrd": ["Life", "Autonomy"], "explanation": premises, "input": "Comment.", "situation": "S", "id": 3}, MODPLURAL)
    metrics = task.item_metrics(item, {"response": " ".join(hypotheses)}, MODPLURAL, scorer)
    assert metrics["coverage"] == pytest.approx(scores.max(axis=1).mean(), abs=1e-6)
    assert metrics["sentences"] == 3 and metrics["above_threshold"] == float(metrics["coverage"] > 0.33)


def test_nli_label_mapping_is_read_from_the_config(tiny_nli, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from modplural.scorers import NLIScorer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_nli)
    model.config.id2label = {0: "entailment", 1: "neutral", 2: "contradiction"}
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_nli).save_pretrained(tmp_path)
    assert NLIScorer(str(tmp_path)).entailment == 0
    model.config.id2label = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    model.save_pretrained(tmp_path)
    with pytest.raises(ModPluralError, match="no single entailment label"):
        NLIScorer(str(tmp_path))


# ----------------------------------------------------------------------------- runner
def _config(tmp_path: Path, registry: Path, **extra) -> Path:
    config = {
        "name": "tiny", "tasks": ["vital_distributional_moralchoice", "vital_steerable_vk"], "methods": ["vanilla", "modular"],
        "registry": str(registry), "limit": 5, "chunk_size": 1, "message_tokens": 6, "main_tokens": 6, "device": "cpu", "cache": False, **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _records(run: Path) -> dict[str, list[dict]]:
    return {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in sorted(RunDir(run).predictions_dir.glob("*.jsonl"))}


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_or_losing_items(adapter_dirs, tmp_path):
    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    config = _config(tmp_path, registry)
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
    regrouped = _config(tmp_path / "regrouped", registry, chunk_size=3)  # how items are grouped may change on resume
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


def test_packed_weights_in_a_config_choose_the_kernel(adapter_dirs, tmp_path):
    from modplural.backends.packed_linear import packing_available

    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    data = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
    packed = "onednn-packed" if packing_available("cpu", "float32") else "plain"
    for setting, kernels in ((False, "plain"), (True, packed)):
        _, _, pool = Experiment(load_config(_config(tmp_path, registry, packed_weights=setting)), data, tmp_path / f"run_{setting}")._build()
        assert pool.backend.kernels == kernels


def test_communities_as_personas_loads_no_adapter_and_runs_them_on_the_main_llm(adapter_dirs, tmp_path):
    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    data = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
    methods, _, pool = Experiment(load_config(_config(tmp_path, registry, communities_as="personas")), data, tmp_path / "run")._build()
    assert pool.backend.adapters == [] and all(c.adapter is None and c.persona for c in pool.communities)
    assert methods["modular"].pool is pool and all("+persona:" in pool.identity(n) for n in pool.names)
    assert_one_line_error(run_cli("run", str(_config(tmp_path, registry, communities_as="loras"))), "communities_as must be one of adapters, personas")
    other = tmp_path / "older"
    other.mkdir()
    older = {k: v for k, v in load_config(_config(tmp_path, registry)).as_dict().items() if k != "communities_as"}  # written before the field existed
    (other / "manifest.json").write_text(json.dumps({"config": older}))
    assert Experiment(load_config(_config(tmp_path, registry)), data, other)._check_manifest()
    with pytest.raises(ModPluralError, match="holds a run of another config"):
        Experiment(load_config(_config(tmp_path, registry, communities_as="personas")), data, other)._check_manifest()


@pytest.mark.parametrize("name", ["/tmp/outside", "../up", "a/b", "", ".hidden", "x" * 101])
def test_a_config_name_is_a_plain_name(tmp_path, name):
    with pytest.raises(ModPluralError, match="name must be a plain name"):
        load_config(_config(tmp_path, tmp_path / "registry.yaml", name=name))


def test_an_empty_community_list_is_an_error(tmp_path):
    with pytest.raises(ModPluralError, match="communities is empty"):
        load_config(_config(tmp_path, tmp_path / "registry.yaml", communities=[]))


def test_config_errors_come_before_any_model_runs(adapter_dirs, tmp_path):
    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    started = time.time()
    assert_one_line_error(run_cli("run", str(_config(tmp_path, registry, methods=["vanilla", "oracle"]))), "unknown method 'oracle'")
    assert_one_line_error(run_cli("run", str(_config(tmp_path, registry, tasks=["vital_trivia"]))), "unknown task 'vital_trivia'")
    assert_one_line_error(run_cli("run", str(_config(tmp_path, registry, colour="red"))), "unknown field 'colour'")
    never = {"base": "modplural", "calibration": "split", "weights": "learned"}  # accepted once, then failed at modular after the baselines ran
    assert_one_line_error(run_cli("run", str(_config(tmp_path, registry, protocol=never)), "--out", str(tmp_path / "never")),
                          "calibration split and weights learned cannot be combined")
    assert not (tmp_path / "never").exists()
    assert_one_line_error(run_cli("run", str(_config(tmp_path, registry, chunk_size="big"))), "chunk_size must be a positive integer or 'auto', got 'big'")
    assert_one_line_error(run_cli("run", str(_config(tmp_path, registry, packed_weights="no"))), "field 'packed_weights' has a bad value 'no' (expected a boolean)")
    other = tmp_path / "other_run"
    other.mkdir()
    recorded = load_config(_config(tmp_path, registry)).as_dict()
    (other / "manifest.json").write_text(json.dumps({"config": {**recorded, "limit": 4}}))
    assert_one_line_error(run_cli("run", str(_config(tmp_path, registry)), "--out", str(other)), "holds a run of another config")
    (other / "manifest.json").write_text(json.dumps({"config": {**recorded, "chunk_size": "auto", "batch_size": 7}}))
    data = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
    assert Experiment(load_config(_config(tmp_path, registry)), data, other)._check_manifest()  # regrouping is no other config
    older = {k: v for k, v in recorded.items() if k != "packed_weights"}  # a manifest written before the field existed
    (other / "manifest.json").write_text(json.dumps({"config": older}))
    assert Experiment(load_config(_config(tmp_path, registry, packed_weights=False)), data, other)._check_manifest()
    bad_data = tmp_path / "data" / "vital"
    bad_data.mkdir(parents=True)
    (bad_data / "vital_distributional_moralchoice.json").write_text(json.dumps([{**GOOD, "gold_distribution": [0.9, 0.9]}]))
    result = run_cli("run", str(_config(tmp_path, registry)), "--data-dir", str(tmp_path / "data"))
    assert_one_line_error(result, "item 0: field 'gold_distribution' must be non-negative and sum to 1")
    assert time.time() - started < 60  # no model was loaded for any of these
    assert_one_line_error(run_cli("report", str(tmp_path)), "not a run directory")


def test_download_without_internet_points_to_data_dir(tmp_path):
    result = run_cli("data", "download", "vital", "--data-dir", str(tmp_path), "--base-url", "http://127.0.0.1:9/", "--timeout", "2")
    assert_one_line_error(result, "--data-dir")
