"""The papers' pack (issue 33 point 1): the released adapters' registry, the papers' configs, the published-numbers
files and `modplural compare` on committed runs. Everything here reads files; no model is loaded."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from modplural.communities import load_registry
from modplural.data_paths import data_dir
from modplural.errors import ModPluralError
from modplural.hub_adapters import fetch_missing
from modplural.papers.definitions import DEFINITIONS
from modplural.papers.published import PAPERS, load_paper
from modplural.protocol import ORIGINAL
from modplural.runs.config import load_config
from modplural.runs.plan import plan_run
from tests.helpers import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "community_models" / "papers" / "modular_pluralism.yaml"
CONFIGS = sorted((REPO / "experiments" / "configs" / "papers").glob("*.yaml"))
PLURALISM = REPO / "experiments" / "results" / "pluralism" / "runs" / "pluralism"  # committed run: manifest.json + metrics.json, no scores
ORIGINAL_RUN = REPO / "experiments" / "results" / "vital_protocols" / "runs" / "original"  # committed run directory with scores.json
NLI = "microsoft/deberta-v2-xlarge-mnli"
BASE = "mistralai/Mistral-7B-Instruct-v0.1"  # generate_community_lm_msg.py
RELEASED = {  # registry name -> hub id, as generate_community_lm_msg.py names them
    "news_center": "bunsenfeng/mistral-news_c", "news_left": "bunsenfeng/mistral-news_l", "news_right": "bunsenfeng/mistral-news_r",
    "reddit_center": "bunsenfeng/mistral-reddit_c", "reddit_left": "bunsenfeng/mistral-reddit_l", "reddit_right": "bunsenfeng/mistral-reddit_r",
    "africa_culture": "bunsenfeng/mistral-africa_culture", "asia_culture": "bunsenfeng/mistral-asia_culture",
    "europe_culture": "bunsenfeng/mistral-europe_culture", "northamerica_culture": "bunsenfeng/mistral-northamerica_culture",
    "southamerica_culture": "bunsenfeng/mistral-southamerica_culture",
}


def _published(tmp_path: Path, numbers: list[dict], name: str = "fixture.yaml") -> Path:
    """A published-numbers file made for a test (its values are test inputs, not any paper's numbers)."""
    data = yaml.safe_load((REPO / "experiments" / "published" / "vital.yaml").read_text())
    data["numbers"] = numbers
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _number(**fields) -> dict:
    return {"task": "vital_overton", "method": "modular", "main_llm": "Model A", "metric": "overton_share_above_0.33", "value": 50.0,
            "unit": "percent", "source": {"url": "https://example.org/paper", "table": "Table 9", "page": "p. 99"}, **fields}


# ----------------------------------------------------------------- the pack validates and resolves offline
def test_pack_registry_lists_the_eleven_released_adapters():
    registry = load_registry(PACK)
    assert {c.name: c.hub for c in registry.communities} == RELEASED
    for c in registry.communities:
        assert c.base_model == BASE and c.corpus is not None and c.weight == 1.0
        assert c.adapter.parent == (PACK.parent / "modular_pluralism").resolve()  # fetched there, ignored by git
    # moe_lm.py's experts, in its order: the descriptions the original MoE prompt shows
    assert [c.description for c in registry.communities[:6]] == ["center news media", "left news media", "right news media",
                                                                 "center Reddit", "left Reddit", "right Reddit"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_pack_config_validates_and_resolves_without_download(path, monkeypatch):
    monkeypatch.chdir(REPO)  # configs name the registry relative to the repository root, like every shipped config
    config = load_config(path)  # the runner's own validation: fields, tasks, methods, protocol
    assert config.resolved_protocol() == ORIGINAL  # the scripts' steps and decoding lengths, nothing overridden
    assert (config.scorer, config.nli_model) == ("nli", NLI)
    assert config.main_model.count("/") == 1 and Path(config.registry).resolve() == PACK
    communities = load_registry(config.registry).select(config.communities)
    assert {c.base_model for c in communities} == {BASE} and all(c.hub for c in communities)
    plan = plan_run(config, data_dir(), REPO / "runs" / "never_created")  # every item validated, nothing written
    assert all(items for _, _, items, _ in plan.tasks.values())
    assert not (REPO / "runs" / "never_created").exists()
    expected = "vital_" if path.stem.startswith("vital") else "general_"
    assert all(t.startswith(expected) for t in config.tasks)


def test_pack_registry_with_a_typo_is_a_one_line_error(tmp_path):
    bad = tmp_path / "pack.yaml"
    bad.write_text(PACK.read_text().replace("hub: bunsenfeng/mistral-news_l", "hubb: bunsenfeng/mistral-news_l"))
    assert_one_line_error(run_cli("communities", "list", "--registry", str(bad)), "unknown field 'hubb'", "news_left")
    bad.write_text(PACK.read_text().replace("hub: bunsenfeng/mistral-news_l", "hub: bunsenfeng mistral-news_l"))
    assert_one_line_error(run_cli("communities", "list", "--registry", str(bad)), "hub must be a hub repository id")


def test_pack_config_with_a_typo_is_a_one_line_error_before_any_model(tmp_path):
    bad = tmp_path / "vital_overton.yaml"
    bad.write_text((REPO / "experiments" / "configs" / "papers" / "vital_overton.yaml").read_text().replace("nli_model:", "nli_modle:"))
    assert_one_line_error(run_cli("run", str(bad), "--out", str(tmp_path / "run")), "unknown field 'nli_modle'")
    assert not (tmp_path / "run").exists()


def test_hub_adapter_offline_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    community = dataclasses.replace(load_registry(PACK).get("news_left"), adapter=tmp_path / "news_left")
    with pytest.raises(ModPluralError, match="could not fetch its adapter bunsenfeng/mistral-news_l") as error:
        fetch_missing([community])
    assert "\n" not in str(error.value)


def test_hub_adapter_is_fetched_into_its_directory_once(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, local_dir, allow_patterns):
        calls.append((repo_id, allow_patterns))
        Path(local_dir).mkdir(parents=True)
        (Path(local_dir) / "adapter_config.json").write_text("{}")
        (Path(local_dir) / "adapter_model.safetensors").write_bytes(b"")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    community = dataclasses.replace(load_registry(PACK).get("reddit_right"), adapter=tmp_path / "reddit_right")
    fetch_missing([community])
    fetch_missing([community])  # already there: not fetched again
    assert calls == [("bunsenfeng/mistral-reddit_r", ["adapter_config.json", "adapter_model.safetensors"])]
    assert community.adapter_present


# ----------------------------------------------------------------- published numbers
@pytest.mark.parametrize("name", PAPERS)
def test_committed_published_numbers_say_where_each_was_read(name):
    paper = load_paper(name)
    assert paper.nli_model == NLI and paper.url.startswith("https://arxiv.org/abs/")
    for p in paper.numbers:
        assert p.number.source.url and p.number.source.table and p.number.source.page
    if not paper.numbers:
        assert paper.not_read  # an empty file says why


# ----------------------------------------------------------------- modplural compare
def test_compare_prints_the_side_by_side_table_on_a_committed_run():
    result = run_cli("compare", str(PLURALISM), "--with", "vital")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    metrics = json.loads((PLURALISM / "metrics.json").read_text())["tasks"]
    for method in ("vanilla", "prompting", "moe", "modular"):  # Overton: both definitions, from the committed metrics
        mean, share = metrics["vital_overton"][method]["coverage"]["value"], metrics["vital_overton"][method]["share_above_0.33"]["value"]
        assert any("vital_overton" in l and f" {method} " in l and "coverage: mean" in l and f"{mean:.3f} [" in l for l in lines)
        assert any("vital_overton" in l and f" {method} " in l and "coverage: share > 0.33" in l and f"{share:.3f} [" in l for l in lines)
    js = metrics["vital_distributional_moralchoice"]["modular"]["js_distance"]["value"]
    assert any("vital_distributional_moralchoice" in l and "JS distance" in l and f"{js:.3f} [" in l for l in lines)
    notes = result.stdout.split("Notes:")[1]
    assert "share of situations whose mean best-sentence entailment is above 0.33" in notes
    assert "embedding-similarity proxy, not NLI entailment" in notes and "not comparable" in notes
    assert "differs from the original scripts" in notes and "the published columns are other main LLMs" in notes
    published = {m: v for m, v in [("vanilla", 26.10), ("prompting", 30.46), ("moe", 22.79), ("modular", 20.09)]}
    for method, percent in published.items():  # the provisional VITAL means of experiments/published/vital.yaml, as fractions
        assert any(f" {method} " in l and "coverage: share > 0.33" in l and l.rstrip().endswith(f"{percent / 100:.3f}") for l in lines)
        assert any(f" {method} " in l and "coverage: mean" in l and l.rstrip().endswith("-") for l in lines)


def test_compare_recomputes_the_share_from_per_item_scores_and_says_when_it_cannot(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ORIGINAL_RUN, run, ignore=shutil.ignore_patterns("plots", "*.md"))
    metrics = json.loads((run / "metrics.json").read_text())
    expected = metrics["tasks"]["vital_overton"]["modular"]["share_above_0.33"]["value"]
    for per_method in metrics["tasks"]["vital_overton"].values():
        del per_method["share_above_0.33"]  # as a metrics file written before the share existed
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = run_cli("compare", str(run), "--with", "vital")
    assert result.returncode == 0, result.stderr
    assert any(" modular " in l and "share > 0.33" in l and f"{expected:.3f} [" in l and "]*" in l for l in result.stdout.splitlines())
    assert "recomputed from the per-item coverage" in result.stdout
    (run / "scores.json").unlink()
    result = run_cli("compare", str(run), "--with", "vital")
    assert result.returncode == 0, result.stderr
    assert any(" modular " in l and "share > 0.33" in l and "not in run files" in l for l in result.stdout.splitlines())
    assert "not computable from this run's files" in result.stdout


def test_compare_converts_published_percentages_beside_the_run(tmp_path):
    paper = _published(tmp_path, [_number(), _number(main_llm="Model B", value=0.25, unit="fraction", hub_id="meta-llama/Llama-2-7b-chat-hf"),
                                  _number(task="vital_distributional_moralchoice", metric="js_distance", value=0.2, unit="fraction")])
    result = run_cli("compare", str(PLURALISM), "--with", str(paper))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(l for l in lines if l.startswith("task "))
    assert header.split()[-4:] == ["Model", "A", "Model", "B"]
    share = next(l for l in lines if " modular " in l and "share > 0.33" in l)
    assert share.split()[-2:] == ["0.500", "0.250"]  # 50 percent and 0.25 as fractions
    mean = next(l for l in lines if " modular " in l and "coverage: mean" in l)
    assert mean.split()[-2:] == ["-", "-"]  # no published mean coverage: nothing is converted into it
    assert next(l for l in lines if " modular " in l and "moralchoice" in l).split()[-2:] == ["0.200", "-"]
    assert "the published columns are other main LLMs (Model A, Model B)" in result.stdout


@pytest.mark.parametrize("fields, fragment", [
    ({"metric": "js_divergence", "task": "vital_distributional_moralchoice"}, "cannot be converted to a modplural metric"),
    ({"metric": "overton_coverage_median"}, "cannot be converted to a modplural metric (convertible:"),
    ({"metric": "js_distance"}, "is not a metric of a overton_valuekaleidoscope task"),
    ({"value": 150.0}, "is not in [0, 1] once converted"),
    ({"unit": "per mille"}, "unit must be fraction or percent"),
    ({"method": "modplural"}, "unknown method 'modplural'"),
    ({"task": "general_overton"}, "is not one of the paper's tasks"),
    ({"tabel": "Table 2"}, "unknown field 'tabel'"),
])
def test_compare_refuses_a_published_number_it_cannot_convert(tmp_path, fields, fragment):
    result = run_cli("compare", str(PLURALISM), "--with", str(_published(tmp_path, [_number(**fields)])))
    assert_one_line_error(result, fragment, "number 0")


def test_compare_errors_are_one_line(tmp_path):
    assert_one_line_error(run_cli("compare", str(PLURALISM), "--with", "vitl"), "unknown paper 'vitl'", "vital or modular_pluralism")
    assert_one_line_error(run_cli("compare", str(PLURALISM), "--with", "modular_pluralism"), "is a run of vital_overton",
                          "Modular Pluralism's published numbers are on general_overton")
    typo = tmp_path / "vital.yaml"
    typo.write_text((REPO / "experiments" / "published" / "vital.yaml").read_text().replace("numbers:", "numbrs:"))
    assert_one_line_error(run_cli("compare", str(PLURALISM), "--with", str(typo)), "unknown field 'numbrs'")
    assert_one_line_error(run_cli("compare", str(PLURALISM.parents[1]), "--with", "vital"), "not a run directory (no manifest.json)",
                          "the runs under it: ", "pluralism_content_free")
    assert_one_line_error(run_cli("compare", str(tmp_path), "--with", "vital"), "not a run directory (no manifest.json)")
    assert_one_line_error(run_cli("compare", str(PLURALISM / "manifest.json"), "--with", "vital"), "not a run directory")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    manifest = json.loads((PLURALISM / "manifest.json").read_text())
    del manifest["finished"]
    (unfinished / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_cli("compare", str(unfinished), "--with", "vital"), "the run has not been scored")
    shutil.copy(PLURALISM / "metrics.json", unfinished / "metrics.json")
    assert_one_line_error(run_cli("compare", str(unfinished), "--with", "vital"), "the run is unfinished")


def test_every_definition_maps_to_a_metric_the_tasks_write():
    from modplural.tasks import TASKS

    written = {name: set() for name in {t.name for t, _ in TASKS.values()}}
    for metrics in (json.loads((PLURALISM / "metrics.json").read_text())["tasks"],):
        for task, per_method in metrics.items():
            written[TASKS[task][0].name] |= set(next(iter(per_method.values())))
    for name, d in DEFINITIONS.items():
        assert all(d.ours in written[kind] for kind in d.tasks), name

