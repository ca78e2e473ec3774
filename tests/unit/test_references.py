"""The no-model reference rows (modplural/references.py): checked against numbers computed by hand on small task files."""

from __future__ import annotations

import json
import math

import pytest

from modplural.protocol import MODPLURAL
from modplural.references import PRIOR, UNIFORM, population_priors, reference_scores
from modplural.tasks import load_task


def _js(p: list[float], q: list[float]) -> float:
    """The Jensen-Shannon distance written out: sqrt of the mean KL divergence to the midpoint, natural logarithms."""
    m = [(a + b) / 2 for a, b in zip(p, q)]
    kl = lambda x: sum(a * math.log(a / c) for a, c in zip(x, m) if a > 0)  # noqa: E731
    return math.sqrt((kl(p) + kl(q)) / 2)


def _write(tmp_path, name: str, rows: list[dict]):
    (tmp_path / "vital").mkdir(exist_ok=True)
    (tmp_path / "vital" / name).write_text(json.dumps(rows))
    return tmp_path


def _survey(i: int, question: str, attribute: str, gold: list[float]) -> dict:
    return {"id": str(i), "question": question, "options": ["Yes", "No", "Unsure"][: len(gold)], "attribute": attribute,
            "gold_distribution": gold, "pred_distribution": None}


def test_the_uniform_row_is_the_uniform_distributions_metric_by_hand(tmp_path):
    rows = [_survey(1, "Is coffee healthy?", "low_ambiguity", [0.7, 0.3]), _survey(2, "Is tea healthy?", "high_ambiguity", [0.2, 0.5, 0.3])]
    data = _write(tmp_path, "vital_distributional_moralchoice.json", rows)
    task, _, items, _ = load_task("vital_distributional_moralchoice", data, MODPLURAL)
    references = reference_scores(task, items, items, MODPLURAL)
    assert list(references) == [UNIFORM]  # every question asked once: no population prior
    scores = references[UNIFORM]["scores"]
    assert scores["1|low_ambiguity"]["js_distance"] == pytest.approx(_js([0.7, 0.3], [0.5, 0.5]), abs=1e-12)
    assert scores["2|high_ambiguity"]["js_distance"] == pytest.approx(_js([0.2, 0.5, 0.3], [1 / 3] * 3), abs=1e-12)
    by_hand = (_js([0.7, 0.3], [0.5, 0.5]) + _js([0.2, 0.5, 0.3], [1 / 3] * 3)) / 2
    assert sum(s["js_distance"] for s in scores.values()) / 2 == pytest.approx(by_hand, abs=1e-12)


def test_the_population_prior_leaves_the_item_out(tmp_path):
    rows = [_survey(1, "Q?", "Kenya", [0.8, 0.2]), _survey(2, "Q?", "Japan", [0.4, 0.6]), _survey(3, "Q?", "Chile", [0.0, 1.0]),
            _survey(4, "Other?", "Kenya", [0.5, 0.5])]
    data = _write(tmp_path, "vital_distributional_globalopinionqa.json", rows)
    task, _, every, _ = load_task("vital_distributional_globalopinionqa", data, MODPLURAL)
    chosen = [i for i in every if i.id in ("1|Kenya", "4|Kenya")]
    assert population_priors(chosen, every) == {"1|Kenya": pytest.approx([0.2, 0.8])}  # (0.4 + 0.0) / 2, (0.6 + 1.0) / 2
    references = reference_scores(task, chosen, every, MODPLURAL)
    assert references[PRIOR]["prior_items"] == 1
    assert references[PRIOR]["scores"]["1|Kenya"]["js_distance"] == pytest.approx(_js([0.8, 0.2], [0.2, 0.8]), abs=1e-12)
    assert references[PRIOR]["scores"]["4|Kenya"] == references[UNIFORM]["scores"]["4|Kenya"] == {"js_distance": 0.0}  # no other group: uniform


def test_a_gold_label_task_has_no_reference_rows(tmp_path):
    row = {"id": "1", "situation": "Drinking coffee", "vrd": "Health", "label": "A", "label_text": "Supports", "input": "Does it? Answer:", "output": "None"}
    data = _write(tmp_path, "vital_steerable_valuekaleidoscope.json", [row])
    task, _, items, _ = load_task("vital_steerable_vk", data, MODPLURAL)
    assert reference_scores(task, items, items, MODPLURAL) == {}

