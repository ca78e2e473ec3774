"""Model cards (README.md) of community adapters: the shipped ones, built from their own files, and the commands
that write them (``communities cards``, ``communities eval``; training is covered in tests/test_training.py).

(On the real model: the parts that need none are in tests/unit/test_model_cards.py.)"""

from __future__ import annotations

import json
import shutil

from modplural.adapters.model_card import CARD
from modplural.communities import default_registry_path, load_registry

SHIPPED = load_registry(default_registry_path())

from tests.helpers import add_persona, load_json, write_card_registry


def test_cli_eval_refreshes_the_cards_with_its_numbers(adapter_dirs, tmp_path, capsys):
    from modplural.cli import main

    texts = {"alpha": "Vaccines are tested in large trials before approval. ", "beta": "Sugar taxes raise the price of soft drinks. "}
    manifest = load_json(SHIPPED.get("patients").adapter / "training_manifest.json")
    for name, text in texts.items():
        shutil.copytree(adapter_dirs[name], tmp_path / "adapters" / name)
        (tmp_path / "adapters" / name / "training_manifest.json").write_text(json.dumps({**manifest, "config": {**manifest["config"], "community": name}}))
        (tmp_path / "corpora" / name).mkdir(parents=True)
        (tmp_path / "corpora" / name / "valid.jsonl").write_text("".join(json.dumps({"text": text * 3}) + "\n" for _ in range(3)))
    registry = add_persona(write_card_registry(tmp_path / "registry.yaml", {name: f"adapters/{name}" for name in texts}), "rural_nurses")
    assert main(["communities", "eval", "--registry", str(registry), "--corpus-dir", str(tmp_path / "corpora"), "--max-blocks", "2",
                 "--seq-len", "16", "--device", "cpu", "--no-stances"]) == 0  # stances: tests/test_stances.py
    matrix = load_json(tmp_path / "adapters" / "distinctness.json")["perplexity"]
    assert set(matrix) == {"base", "alpha", "beta"} and "rural_nurses is persona-only (no adapter): no distinctness or model card" in capsys.readouterr().err
    for name in texts:
        card = (tmp_path / "adapters" / name / CARD).read_text()
        assert f"| **`{name}` adapter** | **{matrix[name][name]:.2f}** |" in card and "evenly spaced 2 blocks of 16 tokens" in card

