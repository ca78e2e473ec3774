"""Collaboration extensions (issue 14 part 4): learned distributional weights (``weights: learned``) and pointwise
steerable selection (``selection: pointwise``): the fit on planted signals, the real model, runs, bad input.

(No model: the parts that need one are in tests/integration/test_extensions.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from modplural.errors import ModPluralError
from modplural.learned_weights import check_learned, fit_weights, mixture, sharpen
from modplural.metrics import js_distance
from tests.helpers import assert_one_line_error, run_cli


def planted(seed: int, items: int = 30, communities: int = 4) -> tuple[list, list]:
    """Per-item community distributions where community 0 says the gold distribution and the others say noise."""
    rng = np.random.default_rng(seed)
    per_item, targets = [], []
    for _ in range(items):
        n = int(rng.integers(2, 6))
        gold = rng.dirichlet(np.ones(n)).tolist()
        per_item.append([gold] + [rng.dirichlet(np.ones(n) * 0.3).tolist() for _ in range(communities - 1)])
        targets.append(gold)
    return per_item, targets


def test_sharpen_and_mixture():
    p = [0.6, 0.3, 0.1, 0.0]
    assert sharpen(p, 1.0) == p and sharpen(p, 0.5) == pytest.approx(np.square(p) / np.square(p).sum())
    assert sharpen(p, 3.0)[3] == 0.0 and sum(sharpen(p, 3.0)) == pytest.approx(1.0) and max(sharpen(p, 3.0)) < 0.6
    assert mixture([0.25, 0.75], [[1, 0], [0, 1]]) == pytest.approx([0.25, 0.75])


def test_the_fit_finds_the_informative_community():
    per_item, targets = planted(0)
    learned = fit_weights(["gold", "a", "b", "c"], per_item, targets, [str(i) for i in range(len(targets))])
    assert max(learned.weights, key=learned.weights.get) == "gold" and learned.weights["gold"] > 0.5
    assert sum(learned.weights.values()) == pytest.approx(1.0)
    assert learned.calibration_js["learned"] < learned.calibration_js["uniform"] - 0.05
    recomputed = np.mean([js_distance(t, mixture(list(learned.weights.values()), d, learned.temperature)) for d, t in zip(per_item, targets)])
    assert learned.calibration_js["learned"] == pytest.approx(recomputed)


def test_the_fit_flattens_overconfident_communities():
    """Every community says the gold distribution squared (too sharp): the fitted temperature undoes it (about 2)."""
    per_item, targets = planted(1, communities=1)
    squared = [[sharpen(d[0], 0.5)] * 3 for d in per_item]
    learned = fit_weights(["a", "b", "c"], squared, targets, [])
    assert 1.7 < learned.temperature < 2.3 and learned.calibration_js["learned"] < 0.02


def test_learned_weights_read_back_are_checked():
    good = {"weights": {"a": 0.25, "b": 0.75}, "temperature": 1.5, "items": ["x"], "calibration_js": {"uniform": 0.3, "learned": 0.2}}
    assert check_learned(good, ["a", "b"], "w.json").weights == {"a": 0.25, "b": 0.75}
    for change, fragment in (
        ({"weights": {"b": 0.75, "a": 0.25}}, "must name the communities a, b in that order"),
        ({"weights": {"a": float("nan"), "b": 0.75}}, "weight of a must be a finite number >= 0"),
        ({"weights": {"a": 0.5, "b": 0.75}}, "must sum to 1"),
        ({"temperature": 0}, "temperature must be a number in"),
        ({"temperature": "hot"}, "temperature must be a number in"),
        ({"items": "x"}, "items must be a list of item ids"),
        ({"calibration_js": {"uniform": 0.3}}, "calibration_js must hold"),
    ):
        with pytest.raises(ModPluralError, match=fragment) as caught:
            check_learned({**good, **change}, ["a", "b"], "w.json")
        assert str(caught.value).startswith("w.json: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize("protocol, method, fragment", [
    ({"base": "modplural", "weights": "learned"}, "ethos", "method 'ethos' cannot learn community weights"),
    ({"base": "original", "selection": "pointwise"}, "modular", "selection pointwise has no original wording"),
    ({"base": "modplural", "selection": "sideways"}, "modular", "protocol switch selection must be one of listwise, pointwise"),
])
def test_extensions_refuse_what_they_cannot_do(protocol, method, fragment):
    from modplural.methods import check_method

    with pytest.raises(ModPluralError, match=fragment) as caught:
        check_method(method, protocol)
    assert "\n" not in str(caught.value)


def test_a_damaged_weights_file_is_a_one_line_error(tmp_path):
    from modplural.data_paths import data_dir
    from modplural.runs.config import ExperimentConfig
    from modplural.runs.generation import Experiment

    config = ExperimentConfig(name="w", tasks=("vital_distributional_moralchoice",), methods=("modular",), limit=2, protocol={"base": "modplural", "weights": "learned"})
    experiment = Experiment(config, data_dir(None), tmp_path / "run")
    experiment.run_dir.path.mkdir()
    method = SimpleNamespace(pool=SimpleNamespace(names=["alpha", "beta"]))  # only the names the stored weights must match
    for stored, fragment in (("{", "not valid JSON"), ('{"t": ' + "9" * 5000 + "}", "not valid JSON"), ("[" * 100000, "not valid JSON"), ('{"vital_distributional_moralchoice": 3}', "expected an object of methods"),
                             ('{"vital_distributional_moralchoice": {"modular": {"weights": {"alpha": 1}}}}', "must name the communities alpha, beta")):
        experiment.run_dir.weights_path.write_text(stored)
        with pytest.raises(ModPluralError, match=fragment) as caught:
            experiment._learned_weights("vital_distributional_moralchoice", "modular", method)
        assert "\n" not in str(caught.value)


def test_ask_refuses_learned_weights():
    assert_one_line_error(run_cli("ask", "Is it fair?", "--mode", "distributional", "--option", "Yes", "--option", "No", "--switch", "weights=learned", "--no-cache"),
                          "weights learned are fitted on calibration items")

