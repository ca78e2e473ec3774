"""Stance distinctness (``modplural communities eval``): the question file, the measurement on shipped adapters, the report.

(No model: the parts that need one are in tests/integration/test_stances.py.)"""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from modplural.adapters.distinctness import BASE
from modplural.adapters.stance_questions import AXES, load_questions
from modplural.adapters.stances import ADAPTERS, PERSONAS, rotations, voices
from modplural.communities import default_registry_path, load_registry
from modplural.errors import ModPluralError
from tests.helpers import assert_one_line_error, run_cli, write_stance_questions

SHIPPED = load_registry(default_registry_path())
PAIR = ["health_news_left", "bioethics_protective"]


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
    path = write_stance_questions(tmp_path / "questions.yaml")
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
    path = write_stance_questions(tmp_path / "questions.yaml")
    path.write_text(path.read_text().replace("axis: bioethics", "axis: ethics"))
    result = run_cli("communities", "eval", "--questions", str(path), "--device", "cpu")
    assert_one_line_error(result, str(path), "question 1 (assisted_dying)", "field 'axis' is 'ethics'")


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

