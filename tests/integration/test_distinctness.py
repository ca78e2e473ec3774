"""The distinctness matrix (``modplural communities eval``): which backends can score it.

(On the real model: the parts that need none are in tests/unit/test_distinctness.py.)"""

from __future__ import annotations

import json
from types import SimpleNamespace

from modplural.adapters.distinctness import BASE, block_losses, perplexity_matrix


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

