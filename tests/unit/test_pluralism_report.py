"""experiments/studies/pluralism_report.py: its decisions on hand-made per-item numbers, and its one-line errors.

(No model: the parts that need one are in tests/integration/test_pluralism_report.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.studies.pluralism_report import (
    Variant,
    beats_every_baseline,
    best_baseline,
    is_refusal,
    learned_weights,
    method_scores,
    parse_variant,
    parse_variants,
    shared_items,
    significantly_better,
    weight_rows,
)
from modplural.errors import ModPluralError
from modplural.runs.directory import RunDir
from tests.helpers import assert_pluralism_report_error, run_pluralism_report


def test_a_variant_is_label_run_dir_and_method():
    assert parse_variant("modular+cf=runs/calibration_content_free:modular") == Variant("modular+cf", Path("runs/calibration_content_free"), "modular")
    assert parse_variant("x=/a:b/run:ethos") == Variant("x", Path("/a:b/run"), "ethos")  # the method follows the last colon


@pytest.mark.parametrize("text", ["modular", "modular=runs/x", "=runs/x:modular", "modular=:modular", "modular=runs/x:"])
def test_a_malformed_variant_is_a_one_line_error(text):
    with pytest.raises(ModPluralError, match="LABEL=RUNDIR:METHOD") as caught:
        parse_variant(text)
    assert "\n" not in str(caught.value)


def test_a_label_names_each_run_once():
    """A label may name several runs (a study split by --tasks), each once."""
    assert [v.run_dir for v in parse_variants(["a=r:vanilla", "b=r:moe", "a=s:vanilla"])] == [Path("r"), Path("r"), Path("s")]
    with pytest.raises(ModPluralError, match="a names the same run more than once"):
        parse_variants(["a=r:vanilla", "b=r:moe", "a=r:vanilla"])


def test_a_method_the_run_lacks_is_named():
    scores = {"t1": {"vanilla": {"1": {"js_distance": 0.2}}, "moe": {"1": {"js_distance": 0.3}}}}
    assert method_scores(Variant("v", Path("r"), "moe"), scores) == {"t1": {"1": {"js_distance": 0.3}}}
    with pytest.raises(ModPluralError, match=r"no method 'ethos' \(it has: moe, vanilla\)"):
        method_scores(Variant("e", Path("r"), "ethos"), scores)


def test_shared_items_are_the_ids_every_variant_holds():
    record = {"js_distance": 0.1}
    scores = {"a": {"t1": {"1": record, "2": record}, "t2": {"9": record}},
              "b": {"t1": {"2": record, "1": record}}}  # b did not run t2: its ids are not compared there
    assert shared_items(scores) == {"t1": ["1", "2"], "t2": ["9"]}


def test_different_items_are_a_one_line_error_naming_both_variants():
    record = {"js_distance": 0.1}
    scores = {"a": {"t1": {"1": record, "2": record}}, "b": {"t1": {"1": record, "3": record}}}
    with pytest.raises(ModPluralError) as caught:
        shared_items(scores)
    message = str(caught.value)
    assert "\n" not in message and "t1: variants a and b scored different items" in message and "'2' only in a" in message


def test_the_best_baseline_follows_the_primary_direction():
    means = {"vanilla": 0.30, "prompting": 0.25, "moe": 0.35, "modular": 0.10}  # modular is no baseline
    assert best_baseline(means, higher_is_better=True) == "moe"
    assert best_baseline(means, higher_is_better=False) == "prompting"
    assert best_baseline({"prompting": 0.2, "moe": 0.2}, higher_is_better=True) == "prompting"  # tie: the first listed
    assert best_baseline({"modular": 0.5}, higher_is_better=True) is None


def test_significance_needs_the_interval_on_the_good_side():
    assert significantly_better((0.05, 0.01, 0.09, 40), higher_is_better=True)
    assert not significantly_better((0.05, -0.01, 0.09, 40), higher_is_better=True)
    assert not significantly_better((0.05, 0.01, 0.09, 40), higher_is_better=False)  # JS went up: worse
    assert significantly_better((-0.05, -0.09, -0.01, 40), higher_is_better=False)
    assert not significantly_better(None, higher_is_better=True)


def test_better_than_every_baseline_means_each_one():
    up, flat = (0.1, 0.02, 0.2, 40), (0.1, -0.02, 0.2, 40)
    assert beats_every_baseline("ext", {"vanilla": up, "prompting": up, "moe": up, "modular": flat}, True)  # modular is no baseline
    assert not beats_every_baseline("ext", {"vanilla": up, "prompting": flat, "moe": up}, True)
    assert beats_every_baseline("ext", {"vanilla": up, "moe": up}, True)  # prompting not run: the baselines that ran
    assert not beats_every_baseline("ext", {"modular": up}, True)  # no baseline ran: nothing to beat
    assert beats_every_baseline("moe", {"vanilla": up, "prompting": up}, True)  # a baseline against the others


def test_learned_weights_are_read_when_present(tmp_path):
    assert learned_weights(RunDir(tmp_path), "modular") == {}
    entry = {"weights": {"c1": 0.25, "c2": 0.75}, "temperature": 2.0, "items": ["1", "2", "3"], "calibration_js": {"uniform": 0.4, "learned": 0.3}}
    (tmp_path / "manifest.json").write_text(json.dumps({"communities": {"c1": "base+c1", "c2": "base+c2"}}))
    (tmp_path / "weights.json").write_text(json.dumps({"t1": {"modular": entry}, "t2": {"moe": entry}}))
    entries = learned_weights(RunDir(tmp_path), "modular")
    assert entries == {"t1": entry}
    assert weight_rows(entries, {"t1": ["3", "4"]}) == ["| t1 | 2 | 0.400 → 0.300 | 3 (1) | c2 0.750, c1 0.250 |"]


def test_a_damaged_weights_file_is_a_one_line_error(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"communities": {"c1": "base+c1", "c2": "base+c2"}}))
    (tmp_path / "weights.json").write_text(json.dumps({"t1": {"modular": {"weights": [0.5, 0.5]}}}))
    with pytest.raises(ModPluralError, match=r"weights.json: t1 / modular: weights must name the communities c1, c2 in that order"):
        learned_weights(RunDir(tmp_path), "modular")


def test_the_script_reports_a_malformed_variant_in_one_line(tmp_path):
    assert_pluralism_report_error(run_pluralism_report("--variant", "modular=runs/calibration_none", "--data-dir", str(tmp_path)), "LABEL=RUNDIR:METHOD")


def test_the_script_reports_a_run_without_scores_in_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    assert_pluralism_report_error(run_pluralism_report("--variant", f"modular={tmp_path / 'run'}:modular", "--data-dir", str(tmp_path)), "has no scores.json")


def test_the_script_needs_one_variant_that_ran(tmp_path):
    assert_pluralism_report_error(run_pluralism_report("--variant", f"modular={tmp_path / 'missing'}:modular", "--data-dir", str(tmp_path)), "no variant has a run directory")


def test_a_generated_perspective_is_counted_without_its_name():
    """ethos's generated perspective names are model output about the item (they may quote it): never in a report."""
    from experiments.studies.pluralism_report import GENERATED, chosen_label

    perspectives = [{"name": "Quoted item text", "source": "main LLM"}, {"name": "patients", "source": "registry"}]
    assert chosen_label({"chosen_community": "Quoted item text", "perspectives": perspectives}) == GENERATED
    assert chosen_label({"chosen_community": "patients", "perspectives": perspectives}) == "patients"
    assert chosen_label({"chosen_community": "patients"}) == "patients"  # modular: no perspectives


@pytest.mark.parametrize("response, refused", [
    ("I'm sorry, but I can't assist with that.", True),
    ("  Sorry, I cannot help with this request.", True),
    ("I cannot provide medical advice.", True),
    ("As an AI language model, I cannot provide any comments on political issues.", True),
    ("As an AI developed by Alibaba Cloud, I am committed to promoting a respectful debate: parents argue that", False),
    ("Vaccination protects children; some parents worry about side effects, and I can't stress enough that...", False),
    ("Parents and doctors disagree. I'm sorry to say the evidence is mixed.", False),
    ("", False),
    (None, False),
])
def test_a_refusal_is_an_opening_apology_or_a_cannot_assist(response, refused):
    assert is_refusal(response) is refused


def test_the_length_check_finds_coverage_that_length_alone_predicts():
    import math

    from experiments.studies.pluralism_report import Loaded, length_check

    def scores(pairs):
        return {"vital_overton": {str(i): {"sentences": n, "coverage": c} for i, (n, c) in enumerate(pairs)}}

    line = lambda n: 0.3 + 0.1 * math.log(n)  # noqa: E731
    short = Loaded(Variant("short", Path("a"), "vanilla"), {}, scores([(n, line(n)) for n in (1, 2, 3)]))
    long = Loaded(Variant("long", Path("b"), "modular"), {}, scores([(n, line(n) + 0.05) for n in (6, 8, 9)]))
    check = length_check({"vital_overton": ["0", "1", "2"]}, {"short": short, "long": long})
    assert check["variants"]["long"]["sentences"] == pytest.approx(23 / 3)
    at_length = {label: v["coverage_at_mean_length"] for label, v in check["variants"].items()}
    assert check["slope"] == pytest.approx(0.1) and at_length["long"] - at_length["short"] == pytest.approx(0.05)  # the offset, not the length
    assert check["variants"]["short"]["correlation"] > 0.9
    assert length_check({"vital_overton": ["0"]}, {"short": short}) == {}  # one variant: nothing to compare

