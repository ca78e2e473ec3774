"""Calibrated option reading (protocol switch ``calibration``): the arithmetic, the content-free prior (computed once,
counted on the real model), split priors from calibration items, and the run directory's raw metrics.

(On the real model: the parts that need none are in tests/unit/test_calibration.py.)"""

from __future__ import annotations

import json
import math

import pytest

from modplural.errors import ModPluralError
from modplural.methods import build_method
from modplural.types import Query
from tests.helpers import MESSAGES, assert_one_line_error, run_cli, run_config, write_registry

CONTENT_FREE_PROTOCOL = {"base": "modplural", "main_tokens": 8, "calibration": "content_free"}
QUESTIONS = [
    ("Should sugary drinks be taxed to reduce obesity?", ("Yes", "No", "Only for children's products")),
    ("Is it acceptable for a doctor to withhold a grim prognosis at the family's request?", ("Never", "Sometimes", "Always")),
    ("Should organ donation be opt-out by default?", ("Yes", "No", "Undecided")),
]


class CountingBackend:
    """Passes option reads through to a real backend and counts the requests (rows) it was sent."""

    def __init__(self, inner) -> None:
        self.inner, self.option_rows = inner, 0

    def generate(self, requests):
        return self.inner.generate(requests)

    def option_probs(self, requests):
        self.option_rows += len(requests)
        return self.inner.option_probs(requests)

    def adapter_identity(self, adapter):
        return self.inner.adapter_identity(adapter)


def calibrated_back(calibrated: list[float], prior: list[float]) -> list[float]:
    """Undo a calibration: the voice's raw distribution (raw distributions sum to 1, so the normalisation is known)."""
    scaled = [c * p for c, p in zip(calibrated, prior)]
    return [s / sum(scaled) for s in scaled]


def test_the_content_free_prior_is_read_once_and_reused(backend):
    counting = CountingBackend(backend)
    method = build_method("vanilla", counting, None, CONTENT_FREE_PROTOCOL)
    first = method.run("distributional", [Query(q, options=o) for q, o in QUESTIONS[:2]])
    assert counting.option_rows == 2 + 1  # two items and one content-free prompt (same template, same option count)
    second = method.run("distributional", [Query(q, options=o) for q, o in QUESTIONS[2:]])
    assert counting.option_rows == 3 + 1  # the prior is reused, not read again
    for result in [*first, *second]:
        assert result.prior == first[0].prior and result.raw_distribution != result.distribution
        expected = [r / p for r, p in zip(result.raw_distribution, result.prior)]
        assert result.distribution == pytest.approx([e / sum(expected) for e in expected])
    raw = build_method("vanilla", backend, None, {**CONTENT_FREE_PROTOCOL, "calibration": "none"}).run("distributional", [Query(q, options=o) for q, o in QUESTIONS[:2]])
    for off, on in zip(raw, first):
        assert off.distribution == pytest.approx(on.raw_distribution, abs=1e-6)
    assert raw[0].raw_distribution is None and raw[0].prior is None


def test_calibration_applies_to_selections_and_every_method(backend, adapter_dirs, tmp_path):
    from modplural.communities import load_registry
    from modplural.pool import CommunityPool

    pool = CommunityPool(backend, load_registry(write_registry(tmp_path / "registry.yaml", adapter_dirs)).select(), decoding=MESSAGES)
    query = Query(QUESTIONS[0][0], options=QUESTIONS[0][1], attribute="the value of public health")
    for name in ("vanilla", "prompting", "moe", "modular"):
        [result] = build_method(name, backend, pool, CONTENT_FREE_PROTOCOL).run("steerable", [query])
        assert result.prior is not None and result.raw_distribution is not None, name
        if name in ("moe", "modular"):
            assert result.selection_prior is not None and set(result.raw_selection_scores) == set(result.selection_scores), name
            assert result.chosen_community == max(result.selection_scores, key=result.selection_scores.get)
    [dist] = build_method("modular", backend, pool, CONTENT_FREE_PROTOCOL).run("distributional", [Query(QUESTIONS[1][0], options=QUESTIONS[1][1])])
    raw_mix = [sum(v) / 2 for v in zip(*(calibrated_back(d, dist.prior) for d in dist.community_distributions.values()))]
    assert dist.raw_distribution == pytest.approx(raw_mix, abs=1e-6)  # the mixture of the voices' raw distributions
    assert math.isclose(sum(dist.distribution), 1.0, abs_tol=1e-6) and dist.distribution != pytest.approx(dist.raw_distribution, abs=1e-3)


def test_a_constant_predictor_with_a_matching_prior_stops_being_constant(backend):
    """Real ValueKaleidoscope items: with the mean raw distribution as the prior, no class can stay the argmax
    everywhere (each class's prior-scaled scores average to the same value), whatever the raw predictions were."""
    from modplural.data_paths import data_dir
    from modplural.protocol import resolve_protocol
    from modplural.tasks import load_task

    protocol = resolve_protocol({"base": "modplural", "calibration": "split"})
    _, _, items, _ = load_task("vital_steerable_vk", data_dir(None), protocol)
    queries = [i.query for i in items[:12]]
    method = build_method("vanilla", backend, None, protocol)
    priors = method.fit_priors("steerable", queries)
    assert method.priors is None  # fitting returns the priors; the method is left as it was
    results = method.with_priors(priors).run("steerable", queries)
    raw_picks = {max(range(3), key=r.raw_distribution.__getitem__) for r in results}
    picks = {max(range(3), key=r.distribution.__getitem__) for r in results}
    assert priors["answer:3"] == pytest.approx([sum(c) / 12 for c in zip(*(r.raw_distribution for r in results))], abs=1e-6)
    assert len(picks) >= 2, f"calibrated predictions are constant ({picks}; raw: {raw_picks})"


def test_split_without_priors_is_a_one_line_error(backend):
    method = build_method("vanilla", backend, None, {"base": "modplural", "calibration": "split"})
    with pytest.raises(ModPluralError, match="calibration split needs priors from calibration items") as caught:
        method.distributional(*QUESTIONS[0])
    assert "\n" not in str(caught.value)


def test_a_zero_prior_from_top10_reading_is_a_one_line_error(backend):
    """The original's top-10 reading gives 0 to a label outside the top 10: calibrating it is refused, never NaN."""
    method = build_method("vanilla", backend, None, {"base": "modplural", "answer_reading": "top10", "calibration": "split"})
    method = method.with_priors({"answer:3": [0.5, 0.5, 0.0]})
    with pytest.raises(ModPluralError, match="prior entry 3 is 0.0"):
        method.distributional(*QUESTIONS[0])


def test_ask_calibration(tmp_path):
    result = run_cli("ask", QUESTIONS[0][0], "--mode", "distributional", "--method", "vanilla", *sum((["--option", o] for o in QUESTIONS[0][1]), []),
                     "--calibration", "content_free", "--json", "--no-cache")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert len(answer["prior"]) == 3 and answer["raw_distribution"] != answer["distribution"]
    split = run_cli("ask", "Is it fair?", "--method", "vanilla", "--switch", "calibration=split", "--no-cache")
    assert_one_line_error(split, "calibration split needs calibration items")


@pytest.mark.slow
def test_a_split_run_fits_stores_and_reuses_its_priors_and_scores_raw_too(adapter_dirs, tmp_path):

    from modplural.runs.directory import RunDir

    config = {"name": "cal", "tasks": ["vital_steerable_vk"], "methods": ["vanilla", "moe"],
              "registry": str(write_registry(tmp_path / "registry.yaml", adapter_dirs)), "limit": 3, "sample": True, "calibration_items": 4,
              "message_tokens": 6, "main_tokens": 6, "device": "cpu", "cache": False, "protocol": {"base": "modplural", "calibration": "split"}}
    out = run_config(tmp_path, config)
    stored = json.loads((out / "calibration.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    for task in config["tasks"]:
        evaluated = {r["id"] for r in RunDir(out).read_predictions(task, "vanilla")}
        assert len(evaluated) == 3 and not evaluated & set(stored[task]["vanilla"]["items"])  # disjoint
        assert stored[task]["vanilla"]["items"] == manifest["data"][task]["calibration_items"] and len(stored[task]["vanilla"]["items"]) == 4
    assert "selection:2" in stored["vital_steerable_vk"]["moe"]["priors"]
    vk = [r["result"] for r in RunDir(out).read_predictions("vital_steerable_vk", "vanilla")]
    assert all(r["prior"] == stored["vital_steerable_vk"]["vanilla"]["priors"]["answer:3"] for r in vk)
    raw = json.loads((out / "metrics.raw.json").read_text())
    calibrated = json.loads((out / "metrics.json").read_text())
    assert set(raw["tasks"]) == set(config["tasks"]) and raw["tasks"] != calibrated["tasks"]
    (out / "metrics.raw.json").unlink()
    assert run_cli("score", str(out)).returncode == 0 and (out / "metrics.raw.json").is_file()  # re-scored without regenerating
    stored["vital_steerable_vk"]["vanilla"]["priors"]["answer:3"][1] = float("nan")
    (out / "calibration.json").write_text(json.dumps(stored).replace("NaN", "0"))
    # a resumed run reads its priors back, checked: drop one prediction so the pair runs again
    predictions = RunDir(out).predictions_path("vital_steerable_vk", "vanilla")
    predictions.write_text("".join(predictions.read_text().splitlines(keepends=True)[:-1]))
    again = run_cli("run", str(tmp_path / "config.yaml"), "--out", str(out), "--no-progress")
    assert_one_line_error(again, "calibration.json: vital_steerable_vk / vanilla: answer:3", "entry 2 is 0")

