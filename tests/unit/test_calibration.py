"""Calibrated option reading (protocol switch ``calibration``): the arithmetic, the content-free prior (computed once,
counted on the real model), split priors from calibration items, and the run directory's raw metrics.

(No model: the parts that need one are in tests/integration/test_calibration.py.)"""

from __future__ import annotations

import pytest

from modplural.calibration import CONTENT_FREE, calibrate, check_priors, content_free, mean_priors
from modplural.errors import ModPluralError
from modplural.prompts import modplural as prompts
from modplural.types import Query


def test_a_uniform_prior_is_the_identity():
    raw = [0.7, 0.2, 0.1]
    assert calibrate(raw, [1 / 3] * 3, "x") == pytest.approx(raw, abs=1e-12)
    assert calibrate(raw, [5.0] * 3, "x") == pytest.approx(raw, abs=1e-12)  # only the prior's shape matters


def test_calibration_divides_by_the_prior_and_renormalises():
    assert calibrate([0.6, 0.4], [0.8, 0.2], "x") == pytest.approx([0.75 / 2.75, 2.0 / 2.75])


@pytest.mark.parametrize("prior, fragment", [
    ([0.5, 0.0, 0.5], "entry 2 is 0.0"),
    ([0.5, float("nan"), 0.5], "entry 2 is nan"),
    ([0.5, 0.5, float("inf")], "entry 3 is inf"),
    ([0.5, -0.1, 0.6], "entry 2 is -0.1"),
    ([0.5, 0.5], "2 entries for 3 labels"),
])
def test_a_bad_prior_is_a_one_line_error_never_nan(prior, fragment):
    with pytest.raises(ModPluralError) as caught:
        calibrate([0.2, 0.3, 0.5], prior, "answer over A, B, C")
    assert fragment in str(caught.value) and "\n" not in str(caught.value) and str(caught.value).startswith("answer over A, B, C")


def test_priors_read_from_a_file_are_checked():
    assert check_priors({"answer:2": [0.3, 0.7], "selection:3": [1, 1, 1]}, "f") == {"answer:2": [0.3, 0.7], "selection:3": [1.0, 1.0, 1.0]}
    for bad, fragment in (([1, 2], "mapping"), ({"answer": [1, 2]}, "bad calibration prior key 'answer'"), ({"answer:2": [0.5, 0]}, "entry 2 is 0"),
                          ({"weights:2": [1, 1]}, "bad calibration prior key")):
        with pytest.raises(ModPluralError, match=fragment):
            check_priors(bad, "f")


def test_split_priors_are_means_per_kind_and_label_count():
    results = [
        {"distribution": [0.2, 0.8], "selection_scores": {"a": 0.1, "b": 0.9}},
        {"distribution": [0.4, 0.6], "selection_scores": {"a": 0.3, "b": 0.7}},
        {"distribution": [0.1, 0.1, 0.8], "community_distributions": {"a": [0.2, 0.2, 0.6], "b": [0.0, 0.0, 1.0]}},
    ]
    priors = mean_priors(results)
    assert priors["answer:2"] == pytest.approx([0.3, 0.7]) and priors["selection:2"] == pytest.approx([0.2, 0.8])
    assert priors["answer:3"] == pytest.approx([0.1, 0.1, 0.8])  # each voice's distribution, not the mixture


def test_the_content_free_query_keeps_the_template_and_drops_the_content():
    real = Query("Should a nurse override a patient's refusal?", options=("Yes", "No"), attribute="the value of Autonomy",
                 persona="You are from the country of Japan.", frame=("group", "POLPARTY", "Democrat"))
    blank = content_free(real)
    assert blank.text == CONTENT_FREE and blank.options == (CONTENT_FREE,) * 2 and blank.attribute == blank.persona == CONTENT_FREE
    assert blank.frame == ("group", "POLPARTY", CONTENT_FREE)  # the category code picks the original's wording
    other = Query("Is a sugar tax fair?", options=("Fair", "Unfair"), attribute="the value of Equity", persona="You are from the country of Peru.")
    text = prompts.grounded(blank, CONTENT_FREE)
    assert text == prompts.grounded(content_free(other), CONTENT_FREE)  # one prior per template and option count
    assert "A. N/A\nB. N/A" in text and "nurse" not in text and "Japan" not in text


@pytest.mark.parametrize("stored, fragment", [
    ("not json", "not valid JSON"), ('["a"]', "expected a JSON object"), ('{"vital_steerable_vk": ["x"]}', "vital_steerable_vk: expected an object of methods"),
    ('{"vital_steerable_vk": {"vanilla": 3}}', "expected an object with 'items' and 'priors'"),
    ('{"vital_steerable_vk": {"vanilla": {"priors": {"answer:3": [1, 1]}}}}', "has 2 entries for 3 labels"),
])
def test_a_damaged_calibration_file_is_a_one_line_error(tmp_path, stored, fragment):
    """Priors read back on resume are checked before any model is asked (no method is needed to fail)."""
    from modplural.data_paths import data_dir
    from modplural.runs.config import ExperimentConfig
    from modplural.runs.generation import Experiment

    config = ExperimentConfig(name="c", tasks=("vital_steerable_vk",), methods=("vanilla",), limit=2, protocol={"base": "modplural", "calibration": "split"})
    experiment = Experiment(config, data_dir(None), tmp_path / "run")
    experiment.run_dir.path.mkdir()
    experiment.run_dir.calibration_path.write_text(stored)
    task = experiment.tasks["vital_steerable_vk"][0]
    with pytest.raises(ModPluralError, match=fragment) as caught:
        experiment._split_priors("vital_steerable_vk", task, "vanilla", None)
    assert "\n" not in str(caught.value)


def test_a_run_recorded_before_the_switch_existed_is_read_as_calibration_none():
    """An older manifest has no 'calibration' (nor 'repetition', 'message_trim'): those runs had the original's
    behaviour, so an original run stays comparable with the papers and a flipped switch is still named."""
    from modplural.protocol import ORIGINAL
    from modplural.runs.report import _comparability

    old = {k: v for k, v in ORIGINAL.as_dict().items() if k not in ("calibration", "repetition", "message_trim")}
    assert _comparability(old, None).startswith("the papers' protocol")
    assert "(calibration)" in _comparability({**old, "calibration": "content_free"}, None)

