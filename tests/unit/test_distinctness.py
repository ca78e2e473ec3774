"""The distinctness matrix (``modplural communities eval``): which backends can score it.

(No model: the parts that need one are in tests/integration/test_distinctness.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from modplural.adapters.distinctness import BASE, block_losses, own_margins, spread_blocks
from modplural.errors import ModPluralError


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

