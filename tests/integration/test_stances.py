"""Stance distinctness (``modplural communities eval``): the question file, the measurement on shipped adapters, the report.

(On the real model: the parts that need none are in tests/unit/test_stances.py.)"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import yaml

from modplural.adapters.distinctness import BASE
from modplural.adapters.stance_questions import load_questions
from modplural.adapters.stance_report import HEATMAP, JS_MAX
from modplural.adapters.stances import ADAPTERS, ARMS, PERSONAS, js_matrix, measure_stances, summarise
from modplural.communities import default_registry_path, load_registry

SHIPPED = load_registry(default_registry_path())
PAIR = ["health_news_left", "bioethics_protective"]

from tests.helpers import write_stance_questions


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from modplural.backends.local import LocalBackend

    communities = SHIPPED.select(PAIR)
    backend = LocalBackend("default", adapters={c.name: c.adapter for c in communities}, device="cpu", dtype="float32", batch_size=16)
    questions = load_questions(write_stance_questions(tmp_path_factory.mktemp("questions") / "tiny.yaml"))
    return measure_stances(backend, communities, questions, progress=False)


def test_every_read_is_a_distribution_in_the_files_option_order(measured):
    for arm in ARMS:
        for voice, per_question in measured.reads[arm].items():
            for q, reads in zip(measured.questions.questions, per_question):
                assert len(reads) == len(q.options) and all(len(r) == len(q.options) and math.isclose(sum(r), 1, abs_tol=1e-6) for r in reads)
    assert measured.reads[ADAPTERS][BASE] == measured.reads[PERSONAS][BASE]
    assert all(0 < m <= 1 for arm in ARMS for per_q in measured.mass[arm].values() for m in per_q)


@pytest.mark.parametrize("arm", ARMS)
def test_the_js_matrix_is_symmetric_with_a_zero_diagonal_and_bounded_entries(measured, arm):
    matrix = js_matrix(measured.distributions(arm))
    assert list(matrix) == [BASE, *PAIR]
    for a in matrix:
        assert matrix[a][a] == 0.0
        for b in matrix:
            assert matrix[a][b] == matrix[b][a] and math.isfinite(matrix[a][b]) and 0 <= matrix[a][b] <= JS_MAX
    assert all(matrix[a][b] > 0 for a in matrix for b in matrix if a != b)


def test_a_persona_prompt_moves_the_base_models_answers(measured):
    base = measured.distributions(PERSONAS, rotation=0)[BASE]
    for name in PAIR:
        persona = measured.distributions(PERSONAS, rotation=0)[name]
        largest = max(abs(p - b) for pq, bq in zip(persona, base) for p, b in zip(pq, bq))
        assert largest > 0.01, f"the {name} persona leaves the base model's answers as they were (largest change {largest:.4f})"


def test_the_summary_compares_the_arms_and_names_every_community(measured):
    summary = summarise(measured)
    assert summary["questions"] == 3 and set(summary["communities"]) == set(PAIR) and "poles" not in summary  # no pole pair among PAIR
    spread = summary["mean_pairwise_js"]
    assert spread[ADAPTERS] == pytest.approx(js_matrix(measured.distributions(ADAPTERS))[PAIR[0]][PAIR[1]])
    assert spread[PERSONAS] == pytest.approx(js_matrix(measured.distributions(PERSONAS))[PAIR[0]][PAIR[1]])
    low, high = summary["adapters_minus_personas"]["ci95"]
    assert low <= summary["adapters_minus_personas"]["difference"] <= high


@pytest.mark.slow
def test_cli_eval_writes_the_stance_section_json_and_heatmap(tmp_path, capsys):
    from modplural.cli import main

    entries = []
    for name in PAIR:
        community = SHIPPED.get(name)
        shutil.copytree(community.adapter, tmp_path / "adapters" / name)
        (tmp_path / "corpora" / name).mkdir(parents=True)
        (tmp_path / "corpora" / name / "valid.jsonl").write_text(json.dumps({"text": f"{community.description} " * 8}) + "\n")
        entries.append({"name": name, "description": community.description, "axis": community.axis, "base_model": "default",
                        "adapter": f"adapters/{name}", "corpus": {"source": "test", "licence": "CC BY 4.0"}})
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({"version": 1, "communities": entries}))
    questions = write_stance_questions(tmp_path / "tiny.yaml", ("single_payer", "syringe_programmes"))
    assert main(["communities", "eval", "--registry", str(registry), "--corpus-dir", str(tmp_path / "corpora"), "--max-blocks", "1",
                 "--seq-len", "16", "--device", "cpu", "--questions", str(questions)]) == 0
    out = tmp_path / "adapters"
    report = (out / "distinctness.md").read_text()
    assert "## Held-out perplexity" in report and "## Stance distinctness" in report and f"--questions {questions}" in report
    assert "### JS distance between trained adapters" in report and "### JS distance between persona prompts" in report
    assert "**Do trained adapters carry more distinct views than prompts do?**" in report
    data = json.loads((out / "distinctness.json").read_text())
    assert set(data["perplexity"]) == {BASE, *PAIR} and set(data["stances"]["matrices"]) == set(ARMS)
    assert data["stances"]["settings"]["questions_file"] == "tiny.yaml" and len(data["stances"]["questions"]) == 2
    assert (out / HEATMAP).stat().st_size > 0 and f"and {out / HEATMAP}" in capsys.readouterr().out

