"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from modplural.errors import ModPluralError
from modplural.metrics import above_threshold, accuracy, argmax_match, balanced_accuracy, bootstrap, js_distance, macro_f1, overton_coverage, paired_bootstrap


def test_js_distance_matches_scipy_and_hand_values():
    assert js_distance([1, 0], [1, 0]) == 0.0
    # disjoint supports: JS divergence is ln 2 (natural log), the distance its square root
    assert js_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)))
    p, q = [0.5, 0.3, 0.2], [0.1, 0.6, 0.3]
    m = [(a + b) / 2 for a, b in zip(p, q)]
    kl = lambda x, y: sum(a * math.log(a / b) for a, b in zip(x, y) if a > 0)  # noqa: E731
    assert js_distance(p, q) == pytest.approx(math.sqrt((kl(p, m) + kl(q, m)) / 2))
    assert js_distance(p, q) == pytest.approx(float(jensenshannon(p, q)))
    near = [0.1 + 1e-17, 0.2, 0.7 - 1e-17]  # equal in floating point terms: scipy's divergence can round below 0 (its sqrt: NaN)
    assert js_distance(near, [0.1, 0.2, 0.7]) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ModPluralError, match="different lengths"):
        js_distance([1, 0], [1, 0, 0])


def test_overton_coverage_and_threshold():
    scores = np.array([[0.1, 0.9, 0.2], [0.3, 0.2, 0.1]])  # value 1 best 0.9, value 2 best 0.3
    assert overton_coverage(scores) == pytest.approx(0.6)
    assert overton_coverage(np.zeros((2, 0))) == 0.0
    assert above_threshold([0.33, 0.34, 0.1, 0.9]) == 0.5  # strictly above 0.33


def test_classification_metrics():
    gold = ["A", "A", "A", "B", "C", "C"]
    pred = ["A", "A", "B", "B", "A", "C"]
    assert accuracy(gold, pred) == pytest.approx(4 / 6)
    assert balanced_accuracy(gold, pred) == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    # F1: A: tp2 fp1 fn1 -> 4/6; B: tp1 fp1 fn0 -> 2/3; C: tp1 fp0 fn1 -> 2/3
    assert macro_f1(gold, pred) == pytest.approx((4 / 6 + 2 / 3 + 2 / 3) / 3)
    assert argmax_match([0.2, 0.5, 0.3], [0.1, 0.8, 0.1]) == 1.0 and argmax_match([0.6, 0.4], [0.4, 0.6]) == 0.0


def test_bootstrap_interval_contains_the_mean_and_is_seeded():
    values = list(np.linspace(0, 1, 50))
    est = bootstrap(values)
    assert est.value == pytest.approx(0.5) and est.low <= est.value <= est.high and est.high - est.low > 0.05 and est.n == 50
    assert bootstrap(values, seed=3) == bootstrap(values, seed=3)
    assert bootstrap([0.7] * 10).as_dict() == {"value": 0.7, "ci95": [0.7, 0.7], "n": 10}


def test_paired_bootstrap():
    a = [0.9] * 30 + [0.8] * 30
    b = [0.1] * 60
    result = paired_bootstrap(a, b)
    assert result["difference"] == pytest.approx(0.75) and result["p_value"] == 0.0
    same = paired_bootstrap([0.5, 0.4, 0.6, 0.5], [0.5, 0.6, 0.4, 0.5])
    assert same["difference"] == pytest.approx(0.0) and same["p_value"] > 0.5

