"""Stance distinctness (``modplural communities eval``): the question file, the measurement on shipped adapters, the report."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from modplural.communities import default_registry_path, load_registry
from modplural.errors import ModPluralError
from modplural.adapters.distinctness import BASE
from modplural.adapters.stance_questions import AXES, QUESTIONS_FILE, load_questions
from modplural.adapters.stance_report import HEATMAP, JS_MAX
from modplural.adapters.stances import ADAPTERS, ARMS, PERSONAS, js_matrix, measure_stances, rotations, summarise, voices
from tests.helpers import assert_one_line_error, run_cli

SHIPPED = load_registry(default_registry_path())
PAIR = ["health_news_left", "bioethics_protective"]


def _tiny_file(path: Path, ids: tuple[str, ...] = ("single_payer", "assisted_dying", "syringe_programmes")) -> Path:
    """A question file with a few of the shipped questions (one with two options)."""
    data = yaml.safe_load(QUESTIONS_FILE.read_text())
    data["questions"] = [q for q in data["questions"] if q["id"] in ids]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- the question file
def test_the_shipped_question_file_validates():
    questions = load_questions()
    assert questions.version == 1 and len(questions.digest) == 16
    assert len(questions.questions) >= 60
    assert len({q.id for q in questions.questions}) == len(questions.questions)
    by_axis = Counter(q.axis for q in questions.questions)
    assert set(by_axis) == set(AXES) and min(by_axis.values()) >= 10, by_axis
    for q in questions.questions:
        assert 2 <= len(q.options) <= 5 and len({o.lower() for o in q.options}) == len(q.options), q.id
        assert all(f"{label}. {option}" in q.prompt for label, option in zip("ABCDE", q.options)), q.id


@pytest.mark.parametrize("change, fragments", [
    (lambda q: q.update(axis="economics"), ["question 1 (assisted_dying)", "field 'axis'", "political"]),
    (lambda q: q.update(options=["Yes", "yes "]), ["question 1 (assisted_dying)", "field 'options' repeats an option"]),
    (lambda q: q.update(options=["Yes"]), ["question 1 (assisted_dying)", "field 'options' needs 2 to 5 options, got 1"]),
    (lambda q: q.update(options=["Yes", False]), ["question 1 (assisted_dying)", "field 'options' has a bad value"]),  # an unquoted YAML No
    (lambda q: q.pop("question"), ["question 1 (assisted_dying)", "missing field 'question'"]),
    (lambda q: q.update(id="single_payer"), ["question 1", "field 'id' 'single_payer' is used twice"]),
    (lambda q: q.update(id="Assisted Dying"), ["question 1", "field 'id' must be lower_snake_case"]),
    (lambda q: q.update(stance="left"), ["question 1 (assisted_dying)", "unknown field 'stance'"]),
])
def test_a_malformed_question_file_is_a_one_line_error_naming_question_and_field(tmp_path, change, fragments):
    path = _tiny_file(tmp_path / "questions.yaml")
    data = yaml.safe_load(path.read_text())
    change(data["questions"][1])
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ModPluralError) as raised:
        load_questions(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, message


def test_a_question_file_of_another_version_is_refused(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text(yaml.safe_dump({"version": 2, "questions": []}))
    with pytest.raises(ModPluralError, match="field 'version' is 2; this modplural reads version 1"):
        load_questions(path)


def test_cli_refuses_a_bad_question_file_before_loading_any_model(tmp_path):
    path = _tiny_file(tmp_path / "questions.yaml")
    path.write_text(path.read_text().replace("axis: bioethics", "axis: ethics"))
    result = run_cli("communities", "eval", "--questions", str(path), "--device", "cpu")
    assert_one_line_error(result, str(path), "question 1 (assisted_dying)", "field 'axis' is 'ethics'")


# ----------------------------------------------------------------------------- voices and rotations
def test_rotations_show_every_option_once_in_every_position():
    for n in (2, 3, 5):
        orders = rotations(n)
        assert len(orders) == n and all(sorted(o) == list(range(n)) for o in orders)
        assert all(sorted(o[position] for o in orders) == list(range(n)) for position in range(n))


def test_voices_are_adapters_and_description_personas_on_the_base():
    communities = SHIPPED.select(PAIR)
    found = voices(communities)
    assert [(v.arm, v.name, v.adapter) for v in found] == [
        (ADAPTERS, BASE, None), (ADAPTERS, PAIR[0], PAIR[0]), (PERSONAS, PAIR[0], None), (ADAPTERS, PAIR[1], PAIR[1]), (PERSONAS, PAIR[1], None)]
    assert found[2].system == f"You speak for this community: {communities[0].description}" and found[1].system is None


# ----------------------------------------------------------------------------- the measurement on the real model
@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from modplural.backends.local import LocalBackend

    communities = SHIPPED.select(PAIR)
    backend = LocalBackend("default", adapters={c.name: c.adapter for c in communities}, device="cpu", dtype="float32", batch_size=16)
    questions = load_questions(_tiny_file(tmp_path_factory.mktemp("questions") / "tiny.yaml"))
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


# ----------------------------------------------------------------------------- the report
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
    questions = _tiny_file(tmp_path / "tiny.yaml", ("single_payer", "syringe_programmes"))
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
