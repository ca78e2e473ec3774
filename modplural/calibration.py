"""Calibrated option reading (contextual calibration, Zhao et al., ICML 2021, "Calibrate Before Use").

A small main LLM prefers some option letters whatever the question; dividing each answer distribution by the
model's *prior* over the labels and renormalising removes that preference. The protocol switch ``calibration``
says where the prior comes from:

* ``none``: no calibration (the original scripts);
* ``content_free``: the model's distribution for the same prompt with every piece of the item's content (question,
  options, attribute, persona, community messages) replaced by ``N/A``; one prior per prompt template and option
  count, computed once per method (and cached with the main LLM's other answers);
* ``split``: the mean raw distribution over calibration items disjoint from the evaluated ones (``fit_priors``).

Each method keeps the raw distribution and the prior in its result, so ``modplural score`` reports raw metrics too.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Iterable, Sequence

from modplural.errors import ModPluralError
from modplural.types import PluralResult, Query

CONTENT_FREE = "N/A"
KINDS = ("answer", "selection")  # an option answer (letters) and a pick among numbered texts


def content_free(q: Query) -> Query:
    """``q`` with its content replaced by ``N/A``: the template, the number of options and the dataset family stay.

    Built without ``Query``'s checks on purpose: its options are all ``N/A``, which no user query may be. Under
    ``prompts: original`` the item text carries its own options, so its content-free input has none listed.
    """
    blank = object.__new__(Query)
    values = {f.name: getattr(q, f.name) for f in fields(Query)}
    values.update(
        text=CONTENT_FREE,
        options=(CONTENT_FREE,) * len(q.options) if q.options else None,
        attribute=CONTENT_FREE if q.attribute is not None else None,
        persona=CONTENT_FREE if q.persona is not None else None,
        situation=CONTENT_FREE if q.situation is not None else None,
        frame=_content_free_frame(q.frame),
        weights=None,
    )
    for name, value in values.items():
        object.__setattr__(blank, name, value)
    return blank


def _content_free_frame(frame: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The dataset family (and an OpinionQA category code, which selects the wording) stay; values become ``N/A``."""
    if not frame:
        return frame
    keep = 2 if frame[0] == "group" else 1
    return frame[:keep] + (CONTENT_FREE,) * (len(frame) - keep)


def blank(value: str | Sequence[str]) -> str | list[str]:
    """``N/A`` in place of a text, or of each text of a list (community messages)."""
    return CONTENT_FREE if isinstance(value, str) else [CONTENT_FREE] * len(value)


def check_prior(prior: Sequence[float], size: int, where: str) -> list[float]:
    """``prior`` as floats, or a one-line error: it must hold ``size`` finite numbers > 0 (a zero would divide by zero)."""
    values = list(prior)
    if len(values) != size:
        raise ModPluralError(f"{where}: the calibration prior has {len(values)} entries for {size} labels")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ModPluralError(f"{where}: calibration prior entry {i + 1} is {value!r}; every entry must be a finite number > 0 "
                                 "(a label the model never gives cannot be calibrated; use calibration none or answer_reading exact)")
    return [float(v) for v in values]


def calibrate(raw: Sequence[float], prior: Sequence[float], where: str) -> list[float]:
    """``raw`` divided by ``prior``, renormalised; a uniform prior leaves it unchanged."""
    prior = check_prior(prior, len(raw), where)
    scaled = [r / p for r, p in zip(raw, prior)]
    total = sum(scaled)
    if not math.isfinite(total) or total <= 0:
        raise ModPluralError(f"{where}: the distribution to calibrate has no finite mass ({list(raw)!r})")
    return [s / total for s in scaled]


def prior_key(kind: str, size: int) -> str:
    return f"{kind}:{size}"


def mean_priors(results: Iterable[PluralResult | dict]) -> dict[str, list[float]]:
    """Split priors from uncalibrated results: per kind and label count, the mean of the distributions read.

    Answer distributions are each community's (distributional) or the final one; selections are the scores over
    the K texts. A label count no calibration item had gets no prior (those items stay uncalibrated)."""
    samples: dict[str, list[list[float]]] = {}
    for result in results:
        r = result.to_dict() if isinstance(result, PluralResult) else result
        answers = list(r["community_distributions"].values()) if r.get("community_distributions") else ([r["distribution"]] if r.get("distribution") else [])
        for dist in answers:
            samples.setdefault(prior_key("answer", len(dist)), []).append(dist)
        if r.get("selection_scores"):
            scores = list(r["selection_scores"].values())
            samples.setdefault(prior_key("selection", len(scores)), []).append(scores)
    return {key: [sum(column) / len(rows) for column in zip(*rows)] for key, rows in sorted(samples.items())}


def check_priors(priors: object, where: str) -> dict[str, list[float]]:
    """Priors read back from a file: ``{"answer:3": [...], "selection:9": [...]}``, each entry checked."""
    if not isinstance(priors, dict):
        raise ModPluralError(f"{where}: calibration priors must be a mapping of 'answer:N' / 'selection:N' to lists")
    checked = {}
    for key, prior in priors.items():
        kind, _, size = str(key).partition(":")
        if kind not in KINDS or not size.isdigit() or not isinstance(prior, list):
            raise ModPluralError(f"{where}: bad calibration prior key {key!r} (expected 'answer:N' or 'selection:N' with a list)")
        checked[key] = check_prior(prior, int(size), f"{where}: {key}")
    return checked
