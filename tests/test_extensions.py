"""Collaboration extensions (issue 14 part 4): learned distributional weights (``weights: learned``) and pointwise
steerable selection (``selection: pointwise``): the fit on planted signals, the real model, runs, bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from modplural.errors import ModPluralError
from modplural.learned_weights import check_learned, fit_weights, mixture, sharpen
from modplural.methods import build_method
from modplural.metrics import js_distance
from modplural.types import Query
from tests.helpers import assert_one_line_error, run_cli, write_registry

QUESTIONS = [
    ("Should sugary drinks be taxed to reduce obesity?", ("Yes", "No", "Only for children's products")),
    ("Is it acceptable for a doctor to withhold a grim prognosis at the family's request?", ("Never", "Sometimes", "Always")),
    ("Should organ donation be opt-out by default?", ("Yes", "No")),
]
ATTRIBUTE = "the value of individual autonomy"


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


# ----------------------------------------------------------------------------- the fit
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


# ----------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def pools(backend, adapter_dirs, tmp_path_factory):
    """The two test adapters as a pool, in both orders."""
    from modplural.communities import load_registry
    from modplural.pool import CommunityPool
    from tests.test_collaboration import MESSAGES

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
    import yaml

    from modplural.runs.directory import RunDir

    config = {"name": "ext", "tasks": ["vital_distributional_moralchoice", "vital_steerable_vk"], "methods": ["modular"],
              "registry": str(write_registry(tmp_path / "registry.yaml", adapter_dirs)), "limit": 2, "sample": True, "calibration_items": 3,
              "message_tokens": 6, "main_tokens": 6, "device": "cpu", "cache": False,
              "protocol": {"base": "modplural", "weights": "learned", "selection": "pointwise"}}
    path = tmp_path / "ext.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    result = run_cli("run", str(path), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
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
    again = run_cli("run", str(path), "--out", str(out), "--no-progress")
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
