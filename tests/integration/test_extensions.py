"""Collaboration extensions (issue 14 part 4): learned distributional weights (``weights: learned``) and pointwise
steerable selection (``selection: pointwise``): the fit on planted signals, the real model, runs, bad input.

(On the real model: the parts that need none are in tests/unit/test_extensions.py.)"""

from __future__ import annotations

import json

import pytest

from modplural.errors import ModPluralError
from modplural.learned_weights import mixture
from modplural.methods import build_method
from modplural.types import Query
from tests.helpers import MESSAGES, assert_one_line_error, run_cli, run_config, write_registry

QUESTIONS = [
    ("Should sugary drinks be taxed to reduce obesity?", ("Yes", "No", "Only for children's products")),
    ("Is it acceptable for a doctor to withhold a grim prognosis at the family's request?", ("Never", "Sometimes", "Always")),
    ("Should organ donation be opt-out by default?", ("Yes", "No")),
]
ATTRIBUTE = "the value of individual autonomy"


@pytest.fixture(scope="module")
def pools(backend, adapter_dirs, tmp_path_factory):
    """The two test adapters as a pool, in both orders."""
    from modplural.communities import load_registry
    from modplural.pool import CommunityPool

    registry = load_registry(write_registry(tmp_path_factory.mktemp("reg") / "registry.yaml", adapter_dirs))
    forward = CommunityPool(backend, registry.select(), decoding=MESSAGES)
    return forward, forward.subset(list(reversed(forward.names)))


def test_pointwise_selection_has_no_position_to_prefer(backend, pools):
    """Each message is judged alone, so reversing the communities' order changes neither the scores nor the pick."""
    protocol = {"base": "modplural", "main_tokens": 6, "steer_tokens": 6, "selection": "pointwise"}
    queries = [Query(q, options=o, attribute=ATTRIBUTE) for q, o in QUESTIONS] + [Query(QUESTIONS[0][0], attribute=ATTRIBUTE)]
    forward, backward = (build_method("modular", backend, pool, protocol).run("steerable", queries) for pool in pools)
    for a, b in zip(forward, backward):
        assert a.chosen_community == b.chosen_community == max(a.selection_scores, key=a.selection_scores.get)
        assert set(a.selection_scores) == set(b.selection_scores)
        for name in a.selection_scores:
            assert 0 <= a.selection_scores[name] <= 1 and a.selection_scores[name] == pytest.approx(b.selection_scores[name], abs=1e-4)
        assert len(a.main_prompts) == 3 and all("Does the following comment reflect" in p for p in a.main_prompts[:2])
        assert a.community_messages[a.chosen_community] in a.main_prompts[2]  # the grounded answer uses the chosen message
    listwise = build_method("modular", backend, pools[0], {**protocol, "selection": "listwise"}).run("steerable", queries[:1])[0]
    assert len(listwise.main_prompts) == 2 and abs(sum(listwise.selection_scores.values()) - 1) < 1e-6


def test_learned_weights_on_the_real_model(backend, pools):
    method = build_method("modular", backend, pools[0], {"base": "modplural", "weights": "learned"})
    queries = [Query(q, options=o) for q, o in QUESTIONS]
    with pytest.raises(ModPluralError, match="weights learned needs weights fitted on calibration items") as caught:
        method.run("distributional", queries[:1])
    assert "\n" not in str(caught.value)
    targets = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.5]]
    learned = method.fit_weights(queries, targets, ["q1", "q2", "q3"])
    assert list(learned.weights) == pools[0].names and learned.items == ["q1", "q2", "q3"]
    assert learned.calibration_js["learned"] <= learned.calibration_js["uniform"]
    with pytest.raises(ModPluralError, match="weights learned needs weights fitted"):
        method.run("distributional", queries[:1])  # fitting returns the weights; the method is left as it was
    method = method.with_weights(learned)
    results = method.run("distributional", queries)
    for r in results:
        assert r.weights == pytest.approx(learned.weights) and r.temperature == learned.temperature
        assert r.distribution == pytest.approx(mixture(list(learned.weights.values()), list(r.community_distributions.values()), learned.temperature), abs=1e-9)
    uniform = build_method("modular", backend, pools[0], "modplural").run("distributional", queries)
    for a, b in zip(uniform, results):  # the voices are the same; only their mixture changed
        assert all(a.community_distributions[n] == pytest.approx(b.community_distributions[n], abs=1e-6) for n in a.community_distributions)
    assert uniform[0].temperature is None
    explicit = method.run("distributional", [Query(QUESTIONS[0][0], options=QUESTIONS[0][1], weights=(1.0, 0.0))])[0]
    assert explicit.weights == {pools[0].names[0]: 1.0, pools[0].names[1]: 0.0} and explicit.temperature is None  # a query's own weights win


@pytest.mark.slow
def test_a_run_with_learned_weights_and_pointwise_selection(adapter_dirs, tmp_path):

    from modplural.runs.directory import RunDir

    config = {"name": "ext", "tasks": ["vital_distributional_moralchoice", "vital_steerable_vk"], "methods": ["modular"],
              "registry": str(write_registry(tmp_path / "registry.yaml", adapter_dirs)), "limit": 2, "sample": True, "calibration_items": 3,
              "message_tokens": 6, "main_tokens": 6, "device": "cpu", "cache": False,
              "protocol": {"base": "modplural", "weights": "learned", "selection": "pointwise"}}
    out = run_config(tmp_path, config)
    stored = json.loads((out / "weights.json").read_text())
    assert set(stored) == {"vital_distributional_moralchoice"}  # only distributional tasks mix weighted voices
    assert "calibration_items" not in json.loads((out / "manifest.json").read_text())["data"]["vital_steerable_vk"]
    entry = stored["vital_distributional_moralchoice"]["modular"]
    manifest = json.loads((out / "manifest.json").read_text())
    evaluated = [r["result"] for r in RunDir(out).read_predictions("vital_distributional_moralchoice", "modular")]
    assert entry["items"] == manifest["data"]["vital_distributional_moralchoice"]["calibration_items"] and len(entry["items"]) == 3
    assert not {r["id"] for r in RunDir(out).read_predictions("vital_distributional_moralchoice", "modular")} & set(entry["items"])
    assert all(r["weights"] == entry["weights"] and r["temperature"] == entry["temperature"] for r in evaluated)
    steered = [r["result"] for r in RunDir(out).read_predictions("vital_steerable_vk", "modular")]
    assert all(len(r["selection_scores"]) == 2 and r["chosen_community"] == max(r["selection_scores"], key=r["selection_scores"].get) for r in steered)
    # a resumed run reads the weights back, checked: damage them and drop one prediction so the pair runs again
    entry["temperature"] = -1
    (out / "weights.json").write_text(json.dumps(stored))
    predictions = RunDir(out).predictions_path("vital_distributional_moralchoice", "modular")
    predictions.write_text("".join(predictions.read_text().splitlines(keepends=True)[:-1]))
    again = run_cli("run", str(tmp_path / "config.yaml"), "--out", str(out), "--no-progress")
    assert_one_line_error(again, "weights.json: vital_distributional_moralchoice / modular: temperature must be a number in")


def test_pointwise_selection_is_read_uncalibrated_and_fits_no_selection_prior(backend, pools):
    """A prior shared by one query's messages cannot change the pick, so pointwise readings stay raw under every
    calibration, and split calibration keeps no selection prior for them (MoE's listwise expert pick keeps its own)."""
    queries = [Query(q, options=o, attribute=ATTRIBUTE) for q, o in QUESTIONS[:2]]
    plain = build_method("modular", backend, pools[0], {"base": "modplural", "main_tokens": 6, "selection": "pointwise"}).run("steerable", queries)
    for calibration in ("content_free", "split"):
        method = build_method("modular", backend, pools[0], {"base": "modplural", "main_tokens": 6, "selection": "pointwise", "calibration": calibration})
        if calibration == "split":
            priors = method.fit_priors("steerable", queries)
            assert not [k for k in priors if k.startswith("selection:")]
            method = method.with_priors(priors)
        for a, b in zip(plain, method.run("steerable", queries)):
            assert a.selection_scores == pytest.approx(b.selection_scores, abs=1e-6) and b.selection_prior is None
    moe = build_method("moe", backend, pools[0], {"base": "modplural", "main_tokens": 6, "selection": "pointwise", "calibration": "split"})
    assert "selection:2" in moe.fit_priors("steerable", queries)

