"""Model cards (README.md) of community adapters: the shipped ones, built from their own files, and the commands
that write them (``communities cards``, ``communities eval``; training is covered in tests/test_training.py).

(No model: the parts that need one are in tests/integration/test_model_cards.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from modplural.adapters.model_card import CARD, DIGESTS, build_card, card_text, hub_licence, licence_metadata, read_manifest
from modplural.communities import default_registry_path, load_registry
from modplural.errors import ModPluralError
from tests.helpers import add_persona, assert_one_line_error, load_json, run_cli, write_card_registry

SHIPPED = load_registry(default_registry_path())
RESULTS = SHIPPED.communities[0].adapter.parent


def front_matter(card: str) -> dict:
    """The YAML between the card's opening ``---`` lines."""
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _copy_adapter(name: str, dest: Path) -> Path:
    """A copy of a shipped adapter folder (config, weights, manifest) under ``dest``."""
    source = SHIPPED.get(name).adapter
    dest.mkdir(parents=True)
    for file in ("adapter_config.json", "adapter_model.safetensors", "training_manifest.json"):
        shutil.copy(source / file, dest / file)
    return dest


@pytest.mark.parametrize("community", SHIPPED.communities, ids=lambda c: c.name)
def test_shipped_cards_are_current_and_their_front_matter_parses(community):
    card = card_text(community.adapter, community)
    assert (community.adapter / CARD).read_text() == card, "run `modplural communities cards` and commit the cards"
    meta = front_matter(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["library_name"] == "peft"
    assert meta["license"] == (hub_licence(community.corpus.licence) or "other")
    assert meta["license"] != "other" or meta["license_name"]


def test_a_shipped_card_holds_the_numbers_of_its_own_files():
    community = SHIPPED.get("african_clinicians")
    card = (community.adapter / CARD).read_text()
    manifest = load_json(community.adapter / "training_manifest.json")
    adapter_config = load_json(community.adapter / "adapter_config.json")
    assert community.corpus.source in card and community.corpus.licence in card
    assert f"| steps | {manifest['steps']} |" in card and f"| LoRA rank r | {adapter_config['r']} |" in card
    assert f"{manifest['valid_loss']:.4f}" in card and f"`{manifest['corpus']['sha256_16']}`" in card
    assert "dequantized to float32" in card and "SmolLM2-135M-Instruct.Q4_1.gguf" in card
    matrix = load_json(RESULTS / "distinctness.json")["perplexity"]
    own, base = matrix[community.name][community.name], matrix["base"][community.name]
    assert f"| **`{community.name}` adapter** | **{own:.2f}** |" in card and f"| base model (no adapter) | {base:.2f} |" in card
    for other in SHIPPED.names:
        assert f"{matrix[other][community.name]:.2f}" in card
    stance = load_json(RESULTS / "distinctness.json")["stances"]["summary"]["communities"][community.name]
    assert "best of the 9 adapters on this text: yes" in card and f"| adapter_vs_persona | {stance['adapter_vs_persona']:.4g} |" in card
    assert "Commercial use" in card  # CC BY-NC-SA


def test_a_card_where_another_adapter_wins_says_so(tmp_path):
    results = load_json(RESULTS / "distinctness.json")  # the shipped adapters are all own-best: make the left adapter win
    column = results["perplexity"]
    column["health_news_left"]["health_news_right"] = winner = column["health_news_right"]["health_news_right"] - 0.5
    (tmp_path / "distinctness.json").write_text(json.dumps(results))
    community = SHIPPED.get("health_news_right")
    card = card_text(community.adapter, community, tmp_path)
    assert f"no: the `health_news_left` adapter is best ({winner:.2f})" in card
    assert "the `health_news_left` adapter has a lower perplexity than this one" in card


def test_licences_map_to_hub_ids_or_other():
    assert hub_licence("CC BY 4.0") == "cc-by-4.0"
    assert hub_licence("CC BY-NC-SA 4.0 (non-commercial use only)") == "cc-by-nc-sa-4.0"
    assert hub_licence("CC BY-SA 3.0 (ArgQ-Rank-30k); CDLA-Sharing-1.0 (ArgKP-2021)") is None
    assert licence_metadata("code Apache-2.0; text (c) publishers", "https://example.org") == {
        "license": "other", "license_name": "code-apache-2.0-text-c-publishers", "license_link": "https://example.org"}
    assert "license_link" not in licence_metadata("custom terms", None)


def test_base_models_map_to_hub_ids():
    from modplural.models import hub_id

    assert hub_id("default") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id("mistralai/Mistral-7B-Instruct-v0.2") == "mistralai/Mistral-7B-Instruct-v0.2"
    assert hub_id("./weights/model.gguf") is None and hub_id("/models/local") is None


def test_community_missing_from_the_distinctness_results_says_so(tmp_path):
    adapter = _copy_adapter("patients", tmp_path / "patients")
    shutil.copy(RESULTS / "distinctness.json", tmp_path / "distinctness.json")
    registry = load_registry(write_card_registry(tmp_path / "registry.yaml", {"patients": "patients", "newcomers": "patients"}))
    measured = card_text(adapter, registry.get("patients"))
    assert f"{load_json(RESULTS / 'distinctness.json')['perplexity']['patients']['patients']:.2f}" in measured
    for card in (card_text(adapter, registry.get("newcomers")), card_text(adapter, registry.get("patients"), results_dir=tmp_path / "none")):
        assert "Not measured for this adapter yet" in card and "| model | perplexity |" not in card


def test_results_for_other_weights_are_not_shown(tmp_path):
    adapter = _copy_adapter("patients", tmp_path / "patients")
    data = load_json(RESULTS / "distinctness.json")
    data["settings"][DIGESTS]["patients"] = "0" * 16  # measured on an earlier adapter
    (tmp_path / "distinctness.json").write_text(json.dumps(data))
    assert "Not measured for this adapter yet" in card_text(adapter, SHIPPED.get("patients"), results_dir=tmp_path)


def test_stance_numbers_for_these_weights_are_reported(tmp_path):
    adapter = _copy_adapter("patients", tmp_path / "patients")
    shipped = card_text(adapter, SHIPPED.get("patients"), results_dir=RESULTS)  # the committed eval measured the shipped weights
    expected = load_json(RESULTS / "distinctness.json")["stances"]["summary"]["communities"]["patients"]["adapter_vs_base"]
    assert f"| adapter_vs_base | {expected:.4g} |" in shipped and "persona prompt: see Stance under Evaluation" in shipped
    data = load_json(RESULTS / "distinctness.json")
    del data["stances"]
    (tmp_path / "distinctness.json").write_text(json.dumps(data))
    assert "(stance): not measured yet" in card_text(adapter, SHIPPED.get("patients"), results_dir=tmp_path)


def test_a_card_without_a_registry_entry_has_no_registry_fields():
    adapter = SHIPPED.get("clinicians").adapter
    card = build_card(None, read_manifest(adapter / "training_manifest.json"), load_json(adapter / "adapter_config.json"))
    meta = front_matter(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and "license" not in meta
    assert "# clinicians:" in card and "no registry entry" in card and "MTS-Dialog" not in card
    assert "Not measured for this adapter yet" in card


@pytest.mark.parametrize("content, fragment", [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"),
                                               ("[" * 100000, "not valid JSON"), ('{"n": ' + "9" * 6000 + "}", "not valid JSON"),
                                               ('{"config": {}}', "missing steps")])
def test_a_corrupt_manifest_is_an_error_naming_the_file(content, fragment, tmp_path):
    path = tmp_path / "training_manifest.json"
    path.write_text(content)
    with pytest.raises(ModPluralError, match=fragment) as raised:
        read_manifest(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_cli_cards_writes_cards_and_names_a_missing_manifest(tmp_path):
    _copy_adapter("patients", tmp_path / "patients")
    _copy_adapter("clinicians", tmp_path / "clinicians")
    (tmp_path / "clinicians" / "training_manifest.json").unlink()
    registry = write_card_registry(tmp_path / "registry.yaml", {"patients": "patients", "clinicians": "clinicians"})
    result = run_cli("communities", "cards", "--registry", str(registry))
    assert_one_line_error(result, "no model card for clinicians", str(tmp_path / "clinicians" / "training_manifest.json"), "is missing")
    assert f"wrote {tmp_path / 'patients' / CARD}" in result.stdout and not (tmp_path / "clinicians" / CARD).exists()
    assert run_cli("communities", "cards", "--registry", str(registry), "--communities", "patients").returncode == 0


def test_cli_cards_skips_persona_only_communities_with_a_note(tmp_path):
    _copy_adapter("patients", tmp_path / "patients")
    registry = add_persona(write_card_registry(tmp_path / "registry.yaml", {"patients": "patients"}), "rural_nurses")
    result = run_cli("communities", "cards", "--registry", str(registry))
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'patients' / CARD}" in result.stdout
    assert result.stderr.strip() == "modplural: note: rural_nurses is persona-only (no adapter): no model card"

