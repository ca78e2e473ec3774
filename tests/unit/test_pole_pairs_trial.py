"""experiments/trials/pole_pairs_trial.py: its lean and gap on hand-made reads, and its one-line errors (no model)."""

from __future__ import annotations

import json

import pytest

from experiments.trials.pole_pairs_trial import COMMUNITIES, SOURCES, held_out, lean, measure, stored_result
from modplural.adapters.stances import ARMS, BASE
from modplural.errors import ModPluralError

SHIPPED = SOURCES["SmolLM2-135M, shipped (120 steps)"]


def test_lean_reads_the_reversed_question_the_other_way():
    assert lean([0.6, 0.3, 0.1], "single_payer") == pytest.approx(0.5)
    assert lean([0.6, 0.3, 0.1], "malpractice_caps") == pytest.approx(-0.5)


def test_poles_apart_the_intended_way_give_a_positive_gap():
    """Planted reads: the left and permissive poles put everything on the first option, their opposites on the last."""
    result = stored_result(SHIPPED)
    qs = result.questions.questions
    for arm in ARMS:
        for name in (BASE, *COMMUNITIES):
            first = name in ("health_news_left", "bioethics_permissive")
            result.reads[arm][name] = [[[1.0 if (k == 0) == first and k in (0, len(q.options) - 1) else 0.0 for k in range(len(q.options))]]
                                       for q in qs]
    measured = measure(result)
    for axis in ("political", "bioethics"):
        gap = measured["adapters"]["pairs"][axis]["gap"]
        assert gap["ci95"][0] > 1.0  # leans +1 against -1 (malpractice_caps is read reversed, so it pulls the other way)


def test_a_file_without_stance_reads_is_one_line(tmp_path):
    path = tmp_path / "distinctness.json"
    path.write_text(json.dumps({"perplexity": {}}))
    with pytest.raises(ModPluralError, match="holds no stance reads"):
        stored_result(path)
    path.write_text("{")
    with pytest.raises(ModPluralError, match=str(path)):
        stored_result(path)


def test_held_out_perplexity_reads_the_diagonal_and_a_missing_table_is_one_line(tmp_path):
    own, base = held_out(SHIPPED)["bioethics_protective"]
    table = json.loads(SHIPPED.read_text())["perplexity"]
    assert (own, base) == (table["bioethics_protective"]["bioethics_protective"], table["base"]["bioethics_protective"])
    path = tmp_path / "distinctness.json"
    path.write_text(json.dumps({"perplexity": {"base": {}}}))
    with pytest.raises(ModPluralError, match="holds no perplexity table"):
        held_out(path)

