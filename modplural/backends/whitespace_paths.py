"""How the exact label reading extends a batch of prompts by whitespace tokens (``LocalBackend._label_mass``).

A label may follow whitespace-only tokens (``Ġ`` + ``1``, ``Ċ`` + ``Ċ`` + ``A``), so the reading feeds each likely
whitespace token after its prompt and reads the next-token distribution there. Two ways to give such a path the
prompt's keys and values:

* ``TreeColumns`` (caches whose layers are all ``PreallocatedLayer`` s): every path of a prompt is a column of that
  prompt's own cache row, and a 4D attention mask lets it see the prompt and its own earlier whitespace tokens only
  (tree attention). Rows without a path are dropped once; no key or value is copied per path. On a 14-item
  distributional run (126 answer prompts, 1,327 followed paths) this replaced 0.95 s of KV-cache copies and 1.71 s
  of one-token passes over the copies.
* ``RowCopies`` (any cache, sliding-window layers included): each path gets its own copy of its prompt's cache row.

Both compute the same function of the same inputs; the matrix shapes differ (a path is a column of a wider row, or a
row of its own), so floating-point sums can round differently. ``_likeliest`` in ``local.py`` bounds the paths per
request, which bounds a tree row's width.
"""

from __future__ import annotations

from typing import Callable

Forward = Callable[..., object]  # (ids, mask, positions, cache, every_column) -> logits


class RowCopies:
    """Each path continues in its own batch row: the prompt's cache row, LoRA row, mask and position are copied."""

    def __init__(self, forward: Forward, cache, mask, last, bank) -> None:
        self.forward, self.cache, self.mask, self.last, self.bank = forward, cache, mask, last, bank

    def extend(self, parents, tokens):
        """Logits after appending ``tokens[i]`` to the path of frontier node ``parents[i]`` (the prompts, at first)."""
        import torch

        index = parents.to(self.mask.device)
        self.cache.batch_select_indices(index)
        if self.bank is not None:
            self.bank.keep_rows(index)
        self.mask = torch.cat([self.mask[index], self.mask.new_ones((len(index), 1))], dim=1)
        self.last = self.last[index] + 1
        return self.forward(tokens[:, None].to(self.mask.device), self.mask, self.last, self.cache)


class TreeColumns:
    """Each path continues in its prompt's batch row, as new columns that a 4D mask shows only to their own path."""

    def __init__(self, forward: Forward, cache, mask, last, bank, additive=None) -> None:
        """``additive``: None for a boolean mask (sdpa), else the dtype of an additive one (0 / the dtype's minimum: eager)."""
        self.forward, self.cache, self.mask, self.last, self.bank, self.additive = forward, cache, mask, last, bank, additive
        self.row: list[int] | None = None  # per frontier node: its batch row (None: the frontier is the prompts)
        self.path: list[list[int]] = []  # per frontier node: the tree columns of its whitespace tokens
        self.columns = 0  # tree columns appended to the cache so far
        self.depth = 0

    def extend(self, parents, tokens):
        """Logits after appending ``tokens[i]`` to the path of frontier node ``parents[i]`` (the prompts, at first)."""
        import torch

        parents = parents.tolist()
        if self.row is None:
            kept = sorted(set(parents))
            index = torch.tensor(kept, dtype=torch.long, device=self.mask.device)
            self.cache.batch_select_indices(index)
            if self.bank is not None:
                self.bank.keep_rows(index)
            self.mask, self.last = self.mask[index], self.last[index]
            where = {row: i for i, row in enumerate(kept)}
            rows, paths = [where[p] for p in parents], [[] for _ in parents]
        else:
            rows, paths = [self.row[p] for p in parents], [self.path[p] for p in parents]
        slots, used = [], [0] * self.mask.shape[0]
        for row in rows:
            slots.append(used[row])
            used[row] += 1
        width, batch, prompt = max(used), self.mask.shape[0], self.mask.shape[1]
        start = prompt + self.columns
        device = self.mask.device
        ids = torch.full((batch, width), int(tokens[0]), dtype=torch.long)
        # a padding column sees only itself (a query that sees nothing would give NaN); nobody reads its output
        sees = torch.zeros((batch, 1, width, start + width), dtype=torch.bool)
        sees[:, 0, range(width), [start + q for q in range(width)]] = True
        prompt_mask = self.mask.bool().cpu()
        for node, (row, slot, path) in enumerate(zip(rows, slots, paths)):
            ids[row, slot] = tokens[node]
            sees[row, 0, slot, :prompt] = prompt_mask[row]
            sees[row, 0, slot, [prompt + c for c in path]] = True
        self.depth += 1
        positions = (self.last + self.depth).expand(batch, width)
        if self.additive is not None:
            sees = torch.zeros(sees.shape, dtype=self.additive).masked_fill_(~sees, torch.finfo(self.additive).min)
        logits = self.forward(ids.to(device), sees.to(device), positions, self.cache, every_column=True)
        self.row, self.path = rows, [path + [self.columns + slot] for path, slot in zip(paths, slots)]
        self.columns += width
        return logits[torch.tensor(rows, device=device), torch.tensor(slots, device=device)]
