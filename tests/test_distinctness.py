"""The distinctness matrix (``modplural communities eval``): which backends can score it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from modplural.errors import ModPluralError
from modplural.training.distinctness import BASE, perplexity_matrix


class _GenerateOnly:
    """A backend that generates and reads options but cannot score given tokens (like a remote server)."""

    tokenizer = None

    def generate(self, requests):
        return ["" for _ in requests]


def test_a_backend_without_token_nll_gets_a_clear_error(tmp_path):
    with pytest.raises(ModPluralError, match="backend _GenerateOnly cannot score tokens") as raised:
        perplexity_matrix(_GenerateOnly(), [SimpleNamespace(name="alpha")], tmp_path, progress=False)
    assert "\n" not in str(raised.value)


def test_perplexity_matrix_on_the_batched_engine(backend, tmp_path):
    texts = {"alpha": "Vaccines are tested in large trials before approval. ", "beta": "Sugar taxes raise the price of soft drinks. "}
    for name, text in texts.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "valid.jsonl").write_text("".join(json.dumps({"text": text * 3}) + "\n" for _ in range(3)))
    communities = [SimpleNamespace(name=name) for name in texts]
    matrix = perplexity_matrix(backend, communities, tmp_path, max_blocks=2, seq_len=16, progress=False)
    assert list(matrix) == [BASE, "alpha", "beta"] and all(list(row) == ["alpha", "beta"] for row in matrix.values())
    assert all(1 < value < 1e6 for row in matrix.values() for value in row.values())
