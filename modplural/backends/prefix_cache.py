"""Prefix KV reuse: rows of a batch that start with the same tokens under the same adapter share those tokens' keys and values.

A batch keeps the engine's left-padded layout (each row ends at the last column; its positions count from its
first token). Only the columns from ``PrefixPlan.start`` on are run row by row. Each row's tokens before that
column (its *head*) lie inside a prefix it shares with another row of the same adapter, so the distinct heads
are run once each, as one small batch, and their keys and values are copied into every row's KV cache at the
row's own columns (``fill_rows``). A key or value depends only on the tokens up to it, their positions and the
adapter (LoRA changes keys and values); all of these are equal between a head and its rows, so the rows see the
cache the no-reuse path computes, up to the order of floating-point summation (different matmul shapes).

The heads' KV lives only while its batch is prefilled: at most (distinct heads x longest head) positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

MIN_PREFIX = 16  # rows sharing fewer leading tokens are run whole: a separate forward pass is not worth it


@dataclass(frozen=True)
class PrefixPlan:
    """Which heads to run once, and which head (and how many of its tokens) each row's first columns come from."""

    start: int  # the first column that the rows run themselves
    heads: list[list[int]]  # distinct heads' tokens, run once each
    head_adapters: list[str | None]
    row_head: list[int]  # per row: the index of its head (-1: the row has none)
    row_length: list[int]  # per row: how many leading tokens of its head are its own first tokens (0: none)

    @property
    def reused(self) -> int:
        """Prompt tokens of the rows whose keys and values are copied rather than run."""
        return sum(self.row_length) - sum(len(h) for h in self.heads)


def plan_prefixes(seqs: Sequence[Sequence[int]], adapters: Sequence[str | None], min_prefix: int = MIN_PREFIX) -> PrefixPlan | None:
    """How to prefill the left-padded rows ``seqs`` (row ``i`` under ``adapters[i]``) with shared prefixes run once;
    None when sharing would not run fewer token columns than the plain batch.

    Each row may reuse the longest prefix it shares with another row of its adapter (at least ``min_prefix``
    tokens, never its last token: its logits are needed). The rows then run the columns that their longest
    remaining suffix needs; what lies before those columns is each row's head.
    """
    width = max(len(s) for s in seqs)
    shared = [min(p, len(s) - 1) if p >= min_prefix else 0 for s, p in zip(seqs, _shared_lengths(seqs, adapters))]
    suffix = max(len(s) - p for s, p in zip(seqs, shared))
    lengths = [max(0, len(s) - suffix) for s in seqs]
    heads: list[list[int]] = []
    head_adapters: list[str | None] = []
    row_head = [-1] * len(seqs)
    for adapter, rows in _rows_by_adapter(adapters).items():
        current: list[int] | None = None
        for i in sorted((i for i in rows if lengths[i]), key=lambda i: list(seqs[i][: lengths[i]])):
            head = list(seqs[i][: lengths[i]])
            if current is not None and head[: len(current)] == current:  # sorted: a head follows the heads it extends
                heads[-1] = current = head
            else:
                current = head
                heads.append(head)
                head_adapters.append(adapter)
            row_head[i] = len(heads) - 1
    plan = PrefixPlan(width - suffix, heads, head_adapters, row_head, lengths)
    columns = len(heads) * max((len(h) for h in heads), default=0) + len(seqs) * suffix
    return plan if plan.reused > 0 and columns < len(seqs) * width else None


def fill_rows(cache, heads_cache, plan: PrefixPlan) -> None:
    """Write the rows' first ``plan.start`` columns into the empty ``cache``: each row's head tokens from
    ``heads_cache`` (the heads' KV, left-padded), zeros where the row is padding (masked, never attended)."""
    import torch

    first = heads_cache.layers[0].keys
    head_width, device = first.shape[2], first.device
    head_of_row = torch.tensor(plan.row_head, device=device)
    length = torch.tensor(plan.row_length, device=device)
    head_length = torch.tensor([len(h) for h in plan.heads], device=device)
    token = torch.arange(plan.start, device=device)[None, :] - (plan.start - length)[:, None]  # (rows, start): token of the row's head
    valid = token >= 0
    zero = len(plan.heads)  # an all-zero head appended below serves the padding columns
    head_index = torch.where(valid, head_of_row[:, None], zero)
    column = torch.where(valid, head_width - head_length[head_of_row.clamp(min=0)][:, None] + token, 0)
    for index, layer in enumerate(heads_cache.layers):
        keys, values = (torch.cat([t, t.new_zeros(1, *t.shape[1:])])[head_index, :, column].transpose(1, 2) for t in (layer.keys, layer.values))
        cache.update(keys, values, index)


def kv_bytes(cache) -> int:
    """Bytes of the keys and values ``cache`` holds."""
    return sum(t.nelement() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values) if t is not None)


def _shared_lengths(seqs: Sequence[Sequence[int]], adapters: Sequence[str | None]) -> list[int]:
    """Per row, the longest prefix it shares with another row of the same adapter (its neighbours in sorted order)."""
    shared = [0] * len(seqs)
    for rows in _rows_by_adapter(adapters).values():
        rows.sort(key=lambda i: list(seqs[i]))
        for a, b in zip(rows, rows[1:]):
            common = _common_length(seqs[a], seqs[b])
            shared[a], shared[b] = max(shared[a], common), max(shared[b], common)
    return shared


def _rows_by_adapter(adapters: Sequence[str | None]) -> dict[str | None, list[int]]:
    groups: dict[str | None, list[int]] = {}
    for i, adapter in enumerate(adapters):
        groups.setdefault(adapter, []).append(i)
    return groups


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
