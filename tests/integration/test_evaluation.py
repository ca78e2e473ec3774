"""VITAL tasks, scorers, the resumable runner and reports.

(On the real model: the parts that need none are in tests/unit/test_evaluation.py.)"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from modplural.errors import ModPluralError
from modplural.protocol import MODPLURAL
from modplural.runs.config import load_config
from modplural.runs.generation import Experiment
from modplural.tasks.overton import OvertonTask
from tests.helpers import SHARED_DATA, assert_one_line_error, run_cli, write_registry, write_tiny_run_config

GOOD = {"question": "Q?", "options": ["a", "b"], "attribute": "POLPARTY_Democrat", "gold_distribution": [0.25, 0.75], "id": 1}


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


def test_packed_weights_in_a_config_choose_the_kernel(adapter_dirs, tmp_path):
    from modplural.backends.packed_linear import packing_available

    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    data = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
    packed = "onednn-packed" if packing_available("cpu", "float32") else "plain"
    for setting, kernels in ((False, "plain"), (True, packed)):
        _, _, pool = Experiment(load_config(write_tiny_run_config(tmp_path, registry, packed_weights=setting)), data, tmp_path / f"run_{setting}")._build()
        assert pool.backend.kernels == kernels


def test_communities_as_personas_loads_no_adapter_and_runs_them_on_the_main_llm(adapter_dirs, tmp_path):
    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    data = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
    methods, _, pool = Experiment(load_config(write_tiny_run_config(tmp_path, registry, communities_as="personas")), data, tmp_path / "run")._build()
    assert pool.backend.adapters == [] and all(c.adapter is None and c.persona for c in pool.communities)
    assert methods["modular"].pool is pool and all("+persona:" in pool.identity(n) for n in pool.names)
    assert_one_line_error(run_cli("run", str(write_tiny_run_config(tmp_path, registry, communities_as="loras"))), "communities_as must be one of adapters, personas")
    other = tmp_path / "older"
    other.mkdir()
    older = {k: v for k, v in load_config(write_tiny_run_config(tmp_path, registry)).as_dict().items() if k != "communities_as"}  # written before the field existed
    (other / "manifest.json").write_text(json.dumps({"config": older}))
    assert Experiment(load_config(write_tiny_run_config(tmp_path, registry)), data, other)._check_manifest()
    with pytest.raises(ModPluralError, match="holds a run of another config"):
        Experiment(load_config(write_tiny_run_config(tmp_path, registry, communities_as="personas")), data, other)._check_manifest()


def test_config_errors_come_before_any_model_runs(adapter_dirs, tmp_path):
    registry = write_registry(tmp_path / "registry.yaml", adapter_dirs)
    started = time.time()
    assert_one_line_error(run_cli("run", str(write_tiny_run_config(tmp_path, registry, methods=["vanilla", "oracle"]))), "unknown method 'oracle'")
    assert_one_line_error(run_cli("run", str(write_tiny_run_config(tmp_path, registry, tasks=["vital_trivia"]))), "unknown task 'vital_trivia'")
    assert_one_line_error(run_cli("run", str(write_tiny_run_config(tmp_path, registry, colour="red"))), "unknown field 'colour'")
    never = {"base": "modplural", "calibration": "split", "weights": "learned"}  # accepted once, then failed at modular after the baselines ran
    assert_one_line_error(run_cli("run", str(write_tiny_run_config(tmp_path, registry, protocol=never)), "--out", str(tmp_path / "never")),
                          "calibration split and weights learned cannot be combined")
    assert not (tmp_path / "never").exists()
    assert_one_line_error(run_cli("run", str(write_tiny_run_config(tmp_path, registry, chunk_size="big"))), "chunk_size must be a positive integer or 'auto', got 'big'")
    assert_one_line_error(run_cli("run", str(write_tiny_run_config(tmp_path, registry, packed_weights="no"))), "field 'packed_weights' has a bad value 'no' (expected a boolean)")
    other = tmp_path / "other_run"
    other.mkdir()
    recorded = load_config(write_tiny_run_config(tmp_path, registry)).as_dict()
    (other / "manifest.json").write_text(json.dumps({"config": {**recorded, "limit": 4}}))
    assert_one_line_error(run_cli("run", str(write_tiny_run_config(tmp_path, registry)), "--out", str(other)), "holds a run of another config")
    (other / "manifest.json").write_text(json.dumps({"config": {**recorded, "chunk_size": "auto", "batch_size": 7}}))
    data = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))
    assert Experiment(load_config(write_tiny_run_config(tmp_path, registry)), data, other)._check_manifest()  # regrouping is no other config
    older = {k: v for k, v in recorded.items() if k != "packed_weights"}  # a manifest written before the field existed
    (other / "manifest.json").write_text(json.dumps({"config": older}))
    assert Experiment(load_config(write_tiny_run_config(tmp_path, registry, packed_weights=False)), data, other)._check_manifest()
    bad_data = tmp_path / "data" / "vital"
    bad_data.mkdir(parents=True)
    (bad_data / "vital_distributional_moralchoice.json").write_text(json.dumps([{**GOOD, "gold_distribution": [0.9, 0.9]}]))
    result = run_cli("run", str(write_tiny_run_config(tmp_path, registry)), "--data-dir", str(tmp_path / "data"))
    assert_one_line_error(result, "item 0: field 'gold_distribution' must be non-negative and sum to 1")
    assert time.time() - started < 60  # no model was loaded for any of these
    assert_one_line_error(run_cli("report", str(tmp_path)), "not a run directory")

