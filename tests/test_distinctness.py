"""The distinctness matrix (``modplural communities eval``): which backends can score it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from modplural.errors import ModPluralError
from modplural.adapters.distinctness import BASE, block_losses, own_margins, perplexity_matrix, spread_blocks


class _GenerateOnly:
    """A backend that generates and reads options but cannot score given tokens (like a remote server)."""

    tokenizer = None

    def generate(self, requests):
        return ["" for _ in requests]


def test_a_backend_without_token_nll_gets_a_clear_error(tmp_path):
    with pytest.raises(ModPluralError, match="backend _GenerateOnly cannot score tokens") as raised:
        block_losses(_GenerateOnly(), [SimpleNamespace(name="alpha")], tmp_path, progress=False)
    assert "\n" not in str(raised.value)


def test_blocks_are_spread_through_the_whole_validation_text():
    blocks = [[i] for i in range(10)]
    assert spread_blocks(blocks, 4) == [[0], [2], [5], [7]]
    assert spread_blocks(blocks, 50) == blocks and spread_blocks([], 3) == []


def test_perplexity_matrix_on_the_batched_engine(backend, tmp_path):
    texts = {"alpha": "Vaccines are tested in large trials before approval. ", "beta": "Sugar taxes raise the price of soft drinks. "}
    for name, text in texts.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "valid.jsonl").write_text("".join(json.dumps({"text": text * 3}) + "\n" for _ in range(3)))
    communities = [SimpleNamespace(name=name) for name in texts]
    losses = block_losses(backend, communities, tmp_path, max_blocks=2, seq_len=16, progress=False)
    assert all(len(blocks) == 2 for row in losses.values() for blocks in row.values())
    matrix = perplexity_matrix(losses)
    assert list(matrix) == [BASE, "alpha", "beta"] and all(list(row) == ["alpha", "beta"] for row in matrix.values())
    assert all(1 < value < 1e6 for row in matrix.values() for value in row.values())


def test_own_margin_is_the_per_block_difference_to_the_best_other_adapter():
    losses = {BASE: {"a": [3.0, 3.0], "b": [3.0, 3.0]}, "a": {"a": [1.0, 1.2], "b": [2.5, 2.5]},
              "b": {"a": [2.0, 2.0], "b": [2.6, 2.2]}, "c": {"a": [1.5, 1.5], "b": [2.0, 2.0]}}
    margins = own_margins(losses)
    assert margins["a"]["rival"] == "c" and abs(margins["a"]["difference"] + 0.4) < 1e-9
    assert margins["b"]["rival"] == "c" and abs(margins["b"]["difference"] - 0.4) < 1e-9 and margins["b"]["ci95"][0] > 0
    assert "c" not in margins  # no validation text of its own


@pytest.mark.parametrize("flag, value", [("--max-blocks", "0"), ("--seq-len", "-4"), ("--batch-size", "two")])
def test_eval_sizes_must_be_positive_integers(flag, value, capsys):
    from modplural.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["communities", "eval", flag, value])
    assert exited.value.code == 2 and f"argument {flag}: must be a positive integer, got '{value}'" in capsys.readouterr().err
