"""Learned distributional weights (protocol switch ``weights: learned``): one weight per community and one
temperature, fitted on calibration items so that the weighted mixture of the communities' answer distributions
is close to the items' gold distributions.

The mixture for one item is ``sum_c w_c * sharpen(p_c, T)`` with ``sharpen(p, T) = p ** (1 / T)`` renormalised
(T > 1 flattens, T < 1 sharpens); uniform weights and T = 1 are the original's average. The fit minimises the mean
Jensen-Shannon distance (the task metric, ``modplural.metrics.js_distance``) plus a small L2 pull of the weight
logits towards uniform, by L-BFGS-B over bounded logits and log-temperature (deterministic).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from modplural.errors import ModPluralError
from modplural.metrics import js_distance

LOGIT_BOUND = 5.0  # a weight can be at most e^10 times another
TEMPERATURE_RANGE = (0.05, 20.0)
L2 = 0.01  # pull of the logits towards uniform weights, per unit of mean JS distance


@dataclass(frozen=True)
class LearnedWeights:
    """Fitted community weights (in the pool's order, summing to 1) and temperature, with the fit's record."""

    weights: dict[str, float]
    temperature: float
    items: list[str]  # calibration item ids
    calibration_js: dict[str, float]  # mean JS distance on the calibration items: uniform (T = 1) and learned

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sharpen(distribution: Sequence[float], temperature: float) -> list[float]:
    """``p ** (1 / T)`` renormalised; zeros stay zero, a distribution with no mass stays as it is."""
    p = np.asarray(distribution, float)
    if temperature == 1.0 or not p.any():
        return p.tolist()
    with np.errstate(divide="ignore"):
        logs = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)) / temperature, -np.inf)
    out = np.exp(logs - logs.max())
    return (out / out.sum()).tolist()


def mixture(weights: Sequence[float], distributions: Sequence[Sequence[float]], temperature: float = 1.0) -> list[float]:
    """The weighted average of the (sharpened) per-community distributions."""
    sharpened = np.asarray([sharpen(d, temperature) for d in distributions])
    return (np.asarray(weights, float) @ sharpened).tolist()


def _unpack(x: np.ndarray) -> tuple[np.ndarray, float]:
    logits, log_t = x[:-1], x[-1]
    w = np.exp(logits - logits.max())
    return w / w.sum(), float(math.exp(log_t))


def _mean_js(weights: Sequence[float], temperature: float, per_item: Sequence[Sequence[Sequence[float]]], targets: Sequence[Sequence[float]]) -> float:
    return float(np.mean([js_distance(t, mixture(weights, d, temperature)) for d, t in zip(per_item, targets)]))


def fit_weights(names: Sequence[str], per_item: Sequence[Sequence[Sequence[float]]], targets: Sequence[Sequence[float]], items: Sequence[str]) -> LearnedWeights:
    """Weights and temperature for the communities ``names`` from each calibration item's per-community
    distributions (``per_item[i][c]``, in ``names`` order) and its gold distribution ``targets[i]``."""
    from scipy.optimize import minimize

    if not per_item or len(per_item) != len(targets):
        raise ModPluralError(f"learned weights need calibration items with gold distributions, got {len(per_item)} items and {len(targets)} targets")
    k = len(names)

    def loss(x: np.ndarray) -> float:
        w, t = _unpack(x)
        logits = x[:-1] - x[:-1].mean()
        return _mean_js(w, t, per_item, targets) + L2 * float(logits @ logits) / k

    bounds = [(-LOGIT_BOUND, LOGIT_BOUND)] * k + [tuple(math.log(v) for v in TEMPERATURE_RANGE)]
    found = minimize(loss, np.zeros(k + 1), method="L-BFGS-B", bounds=bounds)
    w, t = _unpack(found.x)
    uniform = _mean_js([1 / k] * k, 1.0, per_item, targets)
    learned = _mean_js(w, t, per_item, targets)
    if not learned <= uniform:  # the optimiser never returns worse than its uniform start, but keep the guarantee explicit
        w, t, learned = np.full(k, 1 / k), 1.0, uniform
    return LearnedWeights(dict(zip(names, (float(v) for v in w))), float(t), list(items), {"uniform": uniform, "learned": learned})


def check_learned(data: Any, names: Sequence[str], where: str) -> LearnedWeights:
    """Learned weights read back from a run's weights.json, or a one-line error naming ``where`` and the field."""
    if not isinstance(data, dict):
        raise ModPluralError(f"{where}: expected an object with weights, temperature, items and calibration_js")
    weights, temperature = data.get("weights"), data.get("temperature")
    if not isinstance(weights, dict) or list(weights) != list(names):
        raise ModPluralError(f"{where}: weights must name the communities {', '.join(names)} in that order, got {weights!r:.200}")
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ModPluralError(f"{where}: weight of {name} must be a finite number >= 0, got {value!r}")
    if abs(sum(weights.values()) - 1) > 1e-6:
        raise ModPluralError(f"{where}: weights must sum to 1, got {sum(weights.values())!r}")
    low, high = TEMPERATURE_RANGE
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not low <= temperature <= high:
        raise ModPluralError(f"{where}: temperature must be a number in [{low}, {high}], got {temperature!r}")
    items, js = data.get("items"), data.get("calibration_js")
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ModPluralError(f"{where}: items must be a list of item ids")
    if not isinstance(js, dict) or not all(isinstance(js.get(k), (int, float)) and math.isfinite(js[k]) for k in ("uniform", "learned")):
        raise ModPluralError(f"{where}: calibration_js must hold finite 'uniform' and 'learned' numbers")
    return LearnedWeights({n: float(v) for n, v in weights.items()}, float(temperature), items, {k: float(js[k]) for k in ("uniform", "learned")})
