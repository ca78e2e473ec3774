"""The batched engine's parts (LoRA bank, KV cache, batch sizes) and the sequential reference engine, on the real model.

(No model: the parts that need one are in tests/integration/test_engines.py.)"""

from __future__ import annotations

import pytest
import torch

from modplural.backends import Decoding, GenerateRequest
from modplural.backends.kv_cache import PreallocatedLayer
from modplural.backends.local import LocalBackend, _nucleus
from modplural.backends.sequential import SequentialBackend
from modplural.errors import ModPluralError


def test_preallocated_layer_grows_and_selects_rows():
    layer = PreallocatedLayer(capacity=3)
    k = torch.arange(2 * 1 * 2 * 4, dtype=torch.float32).view(2, 1, 2, 4)
    layer.update(k, k + 100)
    keys, values = layer.update(k[:, :, :1] + 1000, k[:, :, :1] + 2000)  # fills the buffer
    keys, values = layer.update(k[:, :, :1] + 5000, k[:, :, :1] + 6000)  # beyond capacity: grows
    assert keys.shape == (2, 1, 4, 4) and torch.equal(keys[:, :, :2], k) and torch.equal(values[:, :, 3], k[:, :, 0] + 6000)
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys[0, :, :2], k[1]) and layer.get_seq_length() == 4


def test_nucleus_matches_a_full_sort():
    torch.manual_seed(0)
    rows = torch.stack([torch.softmax(torch.randn(5000) / t, dim=-1) for t in (0.3, 1.0, 5.0)])  # peaked .. flat (needs the full sort)
    top_p = torch.tensor([0.9, 0.9, 0.5])
    values, order = _nucleus(rows, top_p, candidates=64)
    for row in range(3):
        sorted_probs, _ = rows[row].sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < top_p[row]
        assert torch.equal(values[row][: int(keep.sum())], sorted_probs[keep]) and not values[row][int(keep.sum()):].any()
        assert torch.equal(rows[row][order[row][: int(keep.sum())]], sorted_probs[keep])


def test_top_k_sampling_on_candidates_equals_the_full_vocabulary_path():
    """The top-k fast path gives the full path's nucleus (same tokens, probabilities to float rounding), keeps tokens
    tied with the k-th, and leaves to the full path the rows it cannot serve (a tie past its spare candidates)."""
    from modplural.backends.local import _nucleus, _top_k_nucleus, _top_k_probs

    torch.manual_seed(0)
    logits = torch.randn(4, 3000) * 4
    logits[1, :60] = 12.0  # row 1: 60 tokens tied at the top: k = 10 keeps them all, past the 10 + 8 candidates
    logits[2] = torch.randn(3000)  # row 2 (every other token below 5): a tie of 10 straddling its 10th token,
    logits[2, :15] = 9.0  # within the spare candidates
    logits[2, :5] = torch.tensor([15.0, 14.0, 13.0, 12.0, 11.0])
    temperature, top_p = torch.tensor([1.0, 1.0, 0.7, 1.3]), torch.tensor([0.9, 0.95, 1.0, 0.97])
    full_values, full_order = _nucleus(_top_k_probs(logits, temperature, 10), top_p)
    served, values, order = _top_k_nucleus(logits, temperature, 10, top_p)
    assert served.tolist() == [True, False, True, True]
    for row in (0, 2, 3):
        kept = int((full_values[row] > 0).sum())
        assert kept == int((values[row] > 0).sum()) and kept > 1
        assert torch.allclose(values[row, :kept], full_values[row, :kept], atol=1e-6)
        assert set(order[row, :kept].tolist()) == set(full_order[row, :kept].tolist())
    assert int((values[2] > 0).sum()) == 15  # row 2: the 5 above the tie and all 10 tied with its 10th
    assert int((full_values[1] > 0).sum()) >= 57  # row 1 on the full path: the tied tokens it keeps (top-p 0.95 of 60)
    assert not _top_k_nucleus(logits, temperature, 0, top_p)[0].any()  # no top-k: every row takes the full path
    assert not _top_k_nucleus(logits, temperature, 2995, top_p)[0].any()  # no room for the spare candidates


def test_seeded_top_k_sampling_does_not_depend_on_the_batch():
    """A seeded top-k row draws the same token alone, beside rows with other top-k (or none), and beside a row whose
    tie sends it to the full path."""
    from modplural.backends.local import _choose_tokens

    torch.manual_seed(1)
    logits = torch.randn(5, 3000) * 3
    logits[4, :80] = 20.0  # a tie past the spare candidates: this row takes the full path
    top_k = [50, 50, 0, 7, 50]
    requests = [GenerateRequest(prompt="x", decoding=Decoding(temperature=1.0, top_p=0.9, top_k=k, seed=i)) for i, k in enumerate(top_k)]
    for draw in range(10):
        together = _choose_tokens(logits, requests, [torch.Generator().manual_seed(100 * draw + i) for i in range(5)])
        alone = [_choose_tokens(logits[i : i + 1], [requests[i]], [torch.Generator().manual_seed(100 * draw + i)])[0] for i in range(5)]
        assert together == alone
        assert together[4] < 80 and all(t in logits[i].topk(50).indices.tolist() for i, t in enumerate(together[:2]))


def test_finite_check_reads_sums_but_judges_values():
    """Logits are checked through their row sums; a sum that overflows on finite logits is not an error, a NaN or an
    infinity is (named by the row's adapter), and padding positions are not read."""
    from modplural.backends.loaded import check_finite

    huge = torch.full((2, 8), 3e38)  # finite, but each row sums to inf
    check_finite(huge, [None, "alpha"])
    for bad in (float("nan"), float("inf"), float("-inf")):
        logits = torch.zeros(2, 8)
        logits[1, 3] = bad
        with pytest.raises(ModPluralError, match="adapter 'alpha' produced NaN or infinite logits"):
            check_finite(logits, [None, "alpha"])
    positions = torch.zeros(2, 3, 8)
    positions[0, 0, 1] = float("nan")
    check_finite(positions, ["alpha", None], mask=torch.tensor([[0, 1, 1], [1, 1, 1]]))  # row 0's first position is padding
    with pytest.raises(ModPluralError, match="adapter 'alpha'"):
        check_finite(positions, ["alpha", None], mask=torch.ones(2, 3))


def test_sampling_follows_the_distribution():
    """The inverse-CDF draw from a row's own generator picks tokens at their nucleus-renormalized rates."""
    from modplural.backends.local import _choose_tokens

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    request = GenerateRequest(prompt="x", decoding=Decoding(temperature=1.0, top_p=0.9, seed=0))
    generator = torch.Generator().manual_seed(0)
    draws = [_choose_tokens(logits, [request], [generator])[0] for _ in range(4000)]
    rates = [draws.count(t) / len(draws) for t in range(4)]
    assert rates[3] == 0  # outside the 0.9 nucleus
    for got, want in zip(rates[:3], (0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95)):
        assert abs(got - want) < 0.03
    # the same on the top-k candidates (the protocol's path): top-k 2 of a 40-token vocabulary, then the 0.9 nucleus
    wide = torch.full((1, 40), -30.0)
    wide[0, 5:9] = logits[0]
    request = GenerateRequest(prompt="x", decoding=Decoding(temperature=1.0, top_p=0.9, top_k=2, seed=0))
    draws = [_choose_tokens(wide, [request], [generator])[0] for _ in range(4000)]
    assert set(draws) == {5, 6} and abs(draws.count(5) / len(draws) - 0.5 / 0.8) < 0.03


def test_top_token_distributions_say_what_the_top_k_missed():
    from modplural.backends.label_tokens import from_top_tokens

    result = from_top_tokens(("A", "B", "C"), {"A": 0.3, " A": 0.1, "B": 0.2, "The": 0.4})
    assert result.probs == pytest.approx((0.4 / 0.6, 0.2 / 0.6, 0.0)) and result.mass == pytest.approx(0.6)  # C was not in the top-k
    empty = from_top_tokens(("A", "B"), {"The": 0.9})
    assert empty.probs == (0.5, 0.5) and empty.mass == 0.0


def test_engines_are_siblings_over_the_loaded_model_base():
    """The reference engine does not inherit the batched engine: a change to one cannot silently change the other."""
    from modplural.backends.base import Backend, TopTokenBackend
    from modplural.backends.loaded import LoadedModelBackend

    assert not issubclass(SequentialBackend, LocalBackend) and not issubclass(LocalBackend, SequentialBackend)
    assert issubclass(SequentialBackend, LoadedModelBackend) and issubclass(LocalBackend, LoadedModelBackend)
    for engine in (LocalBackend, SequentialBackend):
        for protocol in (Backend, TopTokenBackend):
            assert issubclass(engine, protocol), (engine, protocol)
        assert callable(getattr(engine, "token_nll", None))  # TokenScorer (its tokenizer is set per instance)
    with pytest.raises(TypeError, match="abstract"):
        LoadedModelBackend()  # the base runs nothing by itself


def test_sequential_engine_checks_batch_size_like_the_batched_one():
    from modplural.assembly import local_backend

    for engine in ("batched", "sequential"):
        with pytest.raises(ModPluralError, match="batch_size must be a positive integer or 'auto'"):
            local_backend("default", engine=engine, batch_size="lots", device="cpu")

