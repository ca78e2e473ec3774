"""The batched local engine: one transformers model in memory, LoRA adapters by name, mixed-adapter batches."""

from __future__ import annotations

import contextlib
import inspect
import time
from pathlib import Path
from typing import Mapping, Sequence

from modplural.backends.adapter_files import AdapterFiles
from modplural.backends.base import Decoding, GenerateRequest, NextTokenRequest, OptionRequest, OptionResult, TopTokens
from modplural.backends.batch_size import CAPS, auto_rows, forward_tokens, parse_batch_size
from modplural.backends.kv_cache import PreallocatedLayer, preallocated_cache
from modplural.backends.label_tokens import LabelTokens
from modplural.backends.loaded import LoadedModelBackend, check_finite
from modplural.backends.lora_bank import LoraBank
from modplural.backends.packed_linear import pack_linears, packing_available
from modplural.backends.prefix_cache import fill_rows, kv_bytes, plan_prefixes
from modplural.backends.repetition import RepetitionControl
from modplural.backends.whitespace_paths import RowCopies, TreeColumns
from modplural.errors import ModPluralError
from modplural.models import DEFAULT_MODEL, LoadedModel


WHITESPACE_DEPTH = 3  # whitespace tokens followed before a label (SmolLM2 spells "\n\nA" as Ċ Ċ A)
WHITESPACE_TOLERANCE = 1e-5  # whitespace paths less likely than this are not followed (their mass is reported as unread)
WHITESPACE_NODES = 8  # followed paths per depth: at most this many per request on average over a batch, twice that for one request
# Finished rows stay in a decoding batch (fed padding, their logits unread) until this share of its rows has
# finished: dropping rows copies the KV cache of every row kept, which cost more than carrying a few idle rows
# (126 sampled 200-token messages on the 2-core CPU, alternating runs: 115.1 / 122.2 s dropping each finished row
# at once, 108.1 / 104.4 s at 0.25, 109.7 / 109.0 s at 0.125; the texts identical).
DROP_FRACTION = 0.25
TIE_SPARE = 8  # top-k sampling reads this many candidates past the k-th, so tokens tied with it are kept (see _top_k_nucleus)


class LocalBackend(LoadedModelBackend):
    """The batched engine: ``generate``, ``option_probs``, ``next_tokens`` and ``token_nll`` over mixed-adapter batches.

    Requests are sorted by prompt length, cut into batches of ``batch_size`` rows, left-padded and run
    together even when their rows use different adapters (``LoraBank``: stacked LoRA factors applied per
    row); results come back in request order. Decoding writes into a preallocated KV cache and drops finished rows
    once ``DROP_FRACTION`` of the batch has finished. Sampling uses one ``torch.Generator`` per request, so a seeded request yields the same
    text whichever batch it lands in.

    With ``prefix_reuse`` on (a public switch), rows of a batch that start with the same tokens under the same
    adapter get those tokens' keys and values computed once (``prefix_cache``); ``token_nll``, which needs the
    logits of every position, runs whole rows, and so does a model whose cache has sliding-window layers.

    With ``packed_weights`` on (the default; a no-op off a CPU or outside float32), the model's linear layers multiply
    with oneDNN-prepacked weights (``packed_linear``: the same function, 2-3x the plain kernel's throughput on the
    reference CPU); ``kernels`` says which ran. ``weight_format="int8"`` loads the model with int8 linear layers and embeddings
    instead (``int8_weights``: a quarter of float32's memory; CPU only).

    Loading an adapter adds forward hooks to the model, and packing changes its linear layers in place, so pass
    ``loaded`` only for a model that nothing else uses.
    """

    engine = "batched"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        adapters: Mapping[str, str | Path] | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | str = "auto",
        loaded: LoadedModel | None = None,
        prefix_reuse: bool = True,
        packed_weights: bool = True,
        weight_format: str = "float",
    ) -> None:
        self.batch_size = parse_batch_size(batch_size)
        self.prefix_reuse = prefix_reuse
        self._bank: LoraBank | None = None  # before the base loads ``adapters`` into it
        self._label_tokens: LabelTokens | None = None
        super().__init__(model, adapters, device, dtype, loaded, weight_format)
        self.kernels = "plain"
        if self.loaded.weight_format != "float":
            self.kernels = self.loaded.weight_format
        elif packed_weights and packing_available(self.loaded.device, self.loaded.dtype):
            pack_linears(self._model)
            self.kernels = "onednn-packed"
        forward_params = inspect.signature(type(self.loaded.model).forward).parameters
        self._cache_keyword = "cache" if "cache" in forward_params else "past_key_values"
        # a sliding-window layer keeps only its window: its keys and values cannot be copied by column
        self._reusable = all(type(layer) is PreallocatedLayer for layer in self._new_cache(1).layers)
        # whitespace paths as tree columns need column-addressed caches and attention that takes a 4D mask (eager, sdpa)
        self._attention = getattr(self.loaded.model.config, "_attn_implementation", None)
        self._tree_paths = self._reusable and self._attention in ("sdpa", "eager")

    def _attach_adapter(self, adapter: AdapterFiles) -> None:
        """Make the adapter servable in mixed batches."""
        if self._bank is None:
            self._bank = LoraBank(self._model)
        self._bank.add(adapter)

    def _rows(self, adapters: Sequence[str | None]):
        """Context in which batch row ``i`` runs with ``adapters[i]`` (``None``: the base model)."""
        if self._bank is None or all(a is None for a in adapters):
            return contextlib.nullcontext(None)
        return self._bank.rows(adapters)

    def batch_rows(self) -> int:
        """The most rows a generation batch holds: ``batch_size``, or with "auto" its cap on this device (long prompts
        may leave memory for fewer)."""
        if self.batch_size != "auto":
            return self.batch_size
        return CAPS["cuda" if self.loaded.device.startswith("cuda") else "cpu"]

    def _new_cache(self, capacity: int):
        """A fresh KV cache with room for ``capacity`` positions."""
        return preallocated_cache(self.loaded.model.config, capacity)

    def _batches(self, lengths: Sequence[int], new_tokens: int = 0, all_logits: bool = False, scoring: bool = False) -> list[list[int]]:
        """Request indices sorted by length (longest first), cut into batches of ``batch_size`` rows.

        ``scoring`` (one prompt pass, at most a few extra positions; no decoding that needs many rows): with the
        auto batch size each batch also stays under ``forward_tokens`` padded tokens, so a batch holds rows of
        similar length and left padding adds little work.
        """
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        rows = self.batch_size
        if rows != "auto":
            return [order[i : i + rows] for i in range(0, len(order), rows)]
        element_size = self._activation_bytes()
        config, device = self.loaded.model.config, self.loaded.device
        if not scoring:
            tokens = max(lengths, default=1) + new_tokens
            rows = auto_rows(config, tokens, element_size, device, tokens if all_logits else 1)
            return [order[i : i + rows] for i in range(0, len(order), rows)]
        batches: list[list[int]] = []
        cap = 0
        for i in order:  # longest first: a batch's first row sets its width
            if batches and len(batches[-1]) < cap:
                batches[-1].append(i)
                continue
            width = lengths[i] + new_tokens
            cap = auto_rows(config, width, element_size, device, width if all_logits else 1, scoring=True)
            batches.append([i])
        return batches

    def _activation_bytes(self) -> int:
        """Bytes per activation element (int8 weights compute in float32)."""
        weight = self._model.get_input_embeddings().weight
        return weight.element_size() if weight.dtype.is_floating_point else 4

    def _left_pad(self, seqs: Sequence[Sequence[int]]):
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        device = self.loaded.device
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(device), mask.to(device), positions.to(device)

    # ----------------------------------------------------------------- generate
    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Generate one text per request, in request order."""
        encoded = self._encode_checked(requests)
        results: list[str] = [""] * len(requests)
        new_tokens = max((r.decoding.max_new_tokens for r in requests), default=0)
        for batch in self._batches([len(e) for e in encoded], new_tokens):
            texts = self._generate_batch([encoded[i] for i in batch], [requests[i] for i in batch])
            for i, text in zip(batch, texts):
                results[i] = text
        return results

    def _generate_batch(self, seqs: list[list[int]], requests: list[GenerateRequest]) -> list[str]:
        import torch

        ids, mask, positions = self._left_pad(seqs)
        generators = [_row_generator(r.decoding) for r in requests]
        controls = [RepetitionControl(r.decoding) if RepetitionControl.wanted(r.decoding) else None for r in requests]
        limits = [r.decoding.max_new_tokens for r in requests]
        outputs: list[list[int]] = [[] for _ in requests]
        active = list(range(len(requests)))  # request row of each batch row
        live = list(range(len(requests)))  # batch rows still decoding (finished rows wait to be dropped together)
        adapters = [r.adapter for r in requests]
        started = self._clock()
        cache, start = self._batch_cache(seqs, adapters, ids.shape[1] + max(limits))
        with torch.inference_mode(), self._rows(adapters) as bank:
            logits = self._prefill(ids, mask, positions, cache, start)
            prefilled = self._clock()
            self.stats.prefill_seconds += prefilled - started
            for _ in range(max(limits)):
                rows = [active[pos] for pos in live]
                if len(live) < len(active):
                    logits = logits[torch.tensor(live, device=logits.device)]
                check_finite(logits, [adapters[i] for i in rows])
                for pos, row in enumerate(rows):
                    if controls[row] is not None:
                        controls[row].apply(logits[pos])
                chosen = _choose_tokens(logits, [requests[i] for i in rows], [generators[i] for i in rows])
                feed = [self.tokenizer.pad_token_id] * len(active)
                still = []
                for pos, row, token in zip(live, rows, chosen):
                    if token in self._eos_ids:
                        continue
                    outputs[row].append(token)
                    if controls[row] is not None:
                        controls[row].add(token)
                    if len(outputs[row]) < limits[row]:
                        still.append(pos)
                        feed[pos] = token
                if not still:
                    break
                live = still
                if len(active) - len(live) >= max(1, DROP_FRACTION * len(active)):  # the finished rows leave the batch
                    index = torch.tensor(live, device=ids.device)
                    cache.batch_select_indices(index)
                    mask, positions = mask[index], positions[index]
                    if bank is not None:
                        bank.keep_rows(index)
                    active, feed = [active[pos] for pos in live], [feed[pos] for pos in live]
                    live = list(range(len(active)))
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                positions = positions[:, -1:] + 1
                logits = self._forward(torch.tensor(feed, dtype=torch.long, device=ids.device)[:, None], mask, positions, cache)
                self.stats.decode_steps += 1
                self.stats.decode_rows += len(active)
            self.stats.decode_seconds += self._clock() - prefilled
        self.stats.prompt_tokens += sum(len(s) for s in seqs)
        self.stats.generated_tokens += sum(len(o) for o in outputs)
        return [self.tokenizer.decode(o, skip_special_tokens=True).strip() for o in outputs]

    def _clock(self) -> float:
        """Wall time after the device has finished its queued work (for ``stats``)."""
        if self.loaded.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def _batch_cache(self, seqs: list[list[int]], adapters: Sequence[str | None], capacity: int):
        """A KV cache of ``capacity`` positions for the left-padded rows ``seqs``, and the first column the rows
        still have to run: with prefix reuse, the columns before it already hold the shared prefixes' keys and values."""
        import torch

        cache = self._new_cache(capacity)
        plan = plan_prefixes(seqs, adapters) if self.prefix_reuse and self._reusable else None
        if plan is None:
            return cache, 0
        ids, mask, positions = self._left_pad(plan.heads)
        heads = self._new_cache(ids.shape[1])
        with torch.inference_mode():
            with self._rows(plan.head_adapters):
                self._prefill(ids, mask, positions, heads)
            fill_rows(cache, heads, plan)
        self.stats.reused_prompt_tokens += plan.reused
        self.stats.prefix_cache_peak_bytes = max(self.stats.prefix_cache_peak_bytes, kv_bytes(heads))
        return cache, plan.start

    def _prefill(self, ids, mask, positions, cache, start: int = 0):
        """Run columns ``start:`` of the left-padded batch into ``cache`` in chunks of columns (bounded activations);
        the next-token logits of the last column."""
        columns = max(1, forward_tokens(self.loaded.device) // ids.shape[0])
        for begin in range(start, ids.shape[1], columns):
            end = begin + columns
            logits = self._forward(ids[:, begin:end], mask[:, :end], positions[:, begin:end], cache)
        return logits

    def _forward(self, ids, mask, positions, cache=None, every_column: bool = False):
        """Next-token logits (batch, vocab) of the last position, or (batch, columns, vocab) of ``every_column``,
        extending ``cache`` when given."""
        kwargs = {self._cache_keyword: cache, "use_cache": True} if cache is not None else {}
        out = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=0 if every_column else 1, **kwargs)
        return out.logits if every_column else out.logits[:, -1, :]

    # ----------------------------------------------------------------- option_probs
    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """Distributions over each request's labels, read exactly from the full softmax (``_label_mass``)."""
        import torch

        for r in requests:
            self._check_adapter(r.adapter)
        if self._label_tokens is None and requests:
            self._label_tokens = LabelTokens(self.tokenizer)
        label_ids = [self._label_tokens.ids(r.labels) for r in requests]
        encoded = [self._encode(r.messages, r.prompt, r.answer_prefix) for r in requests]
        results: list[OptionResult | None] = [None] * len(requests)
        # room for the whitespace paths: one column per depth in a copied row, or the paths' columns in the prompt's own row
        extra = WHITESPACE_DEPTH * WHITESPACE_NODES if self._tree_paths else WHITESPACE_DEPTH
        for batch in self._batches([len(e) for e in encoded], extra, scoring=True):
            seqs, adapters = [encoded[i] for i in batch], [requests[i].adapter for i in batch]
            ids, mask, positions = self._left_pad(seqs)
            started = self._clock()
            cache, start = self._batch_cache(seqs, adapters, ids.shape[1] + extra)
            with torch.inference_mode(), self._rows(adapters) as bank:
                logits = self._prefill(ids, mask, positions, cache, start)
                values, unread = self._label_mass(logits, mask, positions[:, -1:], cache, [label_ids[i] for i in batch], adapters, bank)
            self.stats.scoring_seconds += self._clock() - started
            self.stats.prompt_tokens += sum(len(encoded[i]) for i in batch)
            for row, i in enumerate(batch):
                results[i] = _option_result(requests[i].labels, values[row], unread[row])
        return results  # type: ignore[return-value]

    def _label_mass(self, logits, mask, last, cache, label_ids: list[list[list[int]]], adapters: list[str | None], bank) -> tuple[list[list[float]], list[float]]:
        """Per row and label, the probability that the answer is the label, after any run of whitespace tokens,
        from the prompts' next-token ``logits`` (``cache``: their KV; ``last``: each row's last position).

        A label's spellings are every token that equals it once stripped (``A``, ``ĠA``) and any of those after
        whitespace-only tokens (``Ġ`` + ``1``, ``Ċ`` + ``Ċ`` + ``A``): the chain rule sums them exactly along every
        whitespace path more likely than ``WHITESPACE_TOLERANCE``, up to ``WHITESPACE_DEPTH`` tokens deep, on the
        prompt's KV cache (``whitespace_paths``: as tree columns of its row, or in copied rows where the cache cannot
        take them). What is left unfollowed is returned as ``unread`` (an upper bound on the error).
        """
        import torch

        whitespace = torch.tensor(self._label_tokens.whitespace, dtype=torch.long)
        rows = logits.shape[0]
        values = [[0.0] * len(labels) for labels in label_ids]
        unread = [0.0] * rows
        node_rows, node_prob = list(range(rows)), torch.ones(rows, dtype=torch.float64)
        if self._tree_paths:  # sdpa takes a boolean mask as it is; eager adds the mask to its scores
            additive = None if self._attention == "sdpa" else self.loaded.model.dtype
            paths_from = TreeColumns(self._forward, cache, mask, last, bank, additive)
        else:
            paths_from = RowCopies(self._forward, cache, mask, last, bank)
        for depth in range(WHITESPACE_DEPTH + 1):
            check_finite(logits, [adapters[row] for row in node_rows])
            probs = torch.softmax(logits.double(), dim=-1).cpu()
            for node, row in enumerate(node_rows):
                for j, token_ids in enumerate(label_ids[row]):
                    values[row][j] += float(node_prob[node] * probs[node, token_ids].sum())
            paths = probs[:, whitespace] * node_prob[:, None]
            follow = (paths > WHITESPACE_TOLERANCE).nonzero() if depth < WHITESPACE_DEPTH else paths.new_zeros((0, 2), dtype=torch.long)
            follow = _likeliest(follow, paths, node_rows, WHITESPACE_NODES * rows, 2 * WHITESPACE_NODES)
            followed = torch.zeros(len(node_rows), dtype=torch.float64).index_add_(0, follow[:, 0], paths[follow[:, 0], follow[:, 1]])
            for node, row in enumerate(node_rows):
                unread[row] += float(paths[node].sum() - followed[node])
            if not len(follow):
                break
            parents = follow[:, 0]
            node_prob = paths[parents, follow[:, 1]]
            node_rows = [node_rows[p] for p in parents.tolist()]
            logits = paths_from.extend(parents, whitespace[follow[:, 1]])
        return values, unread

    def next_tokens(self, requests: Sequence[NextTokenRequest]) -> list[TopTokens]:
        """The ``k`` likeliest next tokens of each prompt (decoded text, probability), likeliest first."""
        import torch

        for r in requests:
            self._check_adapter(r.adapter)
        encoded = [self._encode(r.messages, r.prompt, r.answer_prefix) for r in requests]
        results: list[TopTokens] = [[] for _ in requests]
        for batch in self._batches([len(e) for e in encoded], scoring=True):
            seqs, adapters = [encoded[i] for i in batch], [requests[i].adapter for i in batch]
            ids, mask, positions = self._left_pad(seqs)
            started = self._clock()
            cache, start = self._batch_cache(seqs, adapters, ids.shape[1])
            with torch.inference_mode(), self._rows(adapters):
                logits = self._prefill(ids, mask, positions, cache, start)
            check_finite(logits, adapters)
            probs = torch.softmax(logits.float(), dim=-1).cpu()
            self.stats.scoring_seconds += self._clock() - started
            self.stats.prompt_tokens += sum(len(encoded[i]) for i in batch)
            for row, i in enumerate(batch):
                top = probs[row].topk(requests[i].k)
                results[i] = [(self.tokenizer.decode([t]), float(p)) for t, p in zip(top.indices.tolist(), top.values.tolist())]
        return results

    # ----------------------------------------------------------------- scoring text
    def token_nll(self, blocks: Sequence[Sequence[int]], adapters: Sequence[str | None]) -> list[tuple[float, int]]:
        """Summed next-token negative log-likelihood and token count of each token block under its adapter."""
        import torch

        if len(blocks) != len(adapters):
            raise ModPluralError("token_nll needs one adapter per block")
        for a in adapters:
            self._check_adapter(a)
        results: list[tuple[float, int]] = [(0.0, 0)] * len(blocks)
        for batch in self._batches([len(b) for b in blocks], all_logits=True, scoring=True):
            ids, mask, positions = self._left_pad([blocks[i] for i in batch])
            with torch.inference_mode(), self._rows([adapters[i] for i in batch]):
                logits = self._model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
            check_finite(logits, [adapters[i] for i in batch], mask)
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            valid = mask[:, 1:].bool() & mask[:, :-1].bool()
            for row, i in enumerate(batch):
                results[i] = (float(-(logp[row][valid[row]]).sum()), int(valid[row].sum()))
        return results


def _likeliest(follow, paths, node_rows: list[int], total: int, per_request: int):
    """The likeliest of the candidate paths ``follow`` ((node, whitespace token) pairs, scored by ``paths``): at most
    ``total`` of them and ``per_request`` per request (``node_rows``: each node's request), so work and memory stay
    bounded however the paths fall."""
    import torch

    scores = paths[follow[:, 0], follow[:, 1]]
    order = scores.argsort(descending=True, stable=True).tolist()
    taken: dict[int, int] = {}
    kept = []
    for i in order:
        row = node_rows[int(follow[i, 0])]
        if taken.get(row, 0) < per_request:
            taken[row] = taken.get(row, 0) + 1
            kept.append(i)
            if len(kept) == total:
                break
    return follow[torch.tensor(sorted(kept), dtype=torch.long)] if len(kept) < len(follow) else follow


def _option_result(labels: tuple[str, ...], values: list[float], unread: float) -> OptionResult:
    mass = sum(values)
    if mass <= 0:
        raise ModPluralError(f"the model put zero probability on every option label {list(labels)}")
    return OptionResult(labels, tuple(v / mass for v in values), mass, unread)


def _row_generator(decoding: Decoding):
    import torch

    if decoding.greedy:
        return None
    generator = torch.Generator()
    if decoding.seed is None:
        generator.seed()
    else:
        generator.manual_seed(decoding.seed)
    return generator


def _choose_tokens(logits, requests: Sequence[GenerateRequest], generators) -> list[int]:
    """Greedy argmax per row; sampled rows (temperature, top-k, top-p) are drawn together on the logits' device.

    Each sampled row draws one uniform number from its own CPU generator and takes the token where that
    number falls in the cumulative distribution of its nucleus: the choice depends only on the row's own
    logits, decoding and generator, never on the batch around it (rows with the same top-k are drawn together, on
    their candidates where they can be; each row's path is decided by the row alone).
    """
    import torch

    sampled = [row for row, g in enumerate(generators) if g is not None]
    chosen = logits.argmax(dim=-1).tolist() if len(sampled) < len(requests) else [0] * len(requests)
    if not sampled:
        return chosen
    device = logits.device
    uniform = {r: float(torch.rand((), generator=generators[r])) for r in sampled}
    groups: dict[int, list[int]] = {}
    for r in sampled:
        groups.setdefault(requests[r].decoding.top_k, []).append(r)
    for top_k, rows in groups.items():
        group = logits if len(rows) == len(requests) else logits[torch.tensor(rows, device=device)]
        temperature = torch.tensor([requests[r].decoding.temperature for r in rows], device=device)
        top_p = torch.tensor([requests[r].decoding.top_p for r in rows], device=device)
        fast, values, order = _top_k_nucleus(group, temperature, top_k, top_p)
        slow = (~fast).nonzero()[:, 0].tolist()
        tokens = _draw(values, order, [uniform[r] for r in rows]) if len(slow) < len(rows) else [0] * len(rows)
        if slow:
            index = torch.tensor(slow, device=device)
            full = _nucleus(_top_k_probs(group[index], temperature[index], top_k), top_p[index])
            for i, token in zip(slow, _draw(*full, [uniform[rows[i]] for i in slow])):
                tokens[i] = token
        for r, token in zip(rows, tokens):
            chosen[r] = token
    return chosen


def _draw(values, order, uniform: list[float]) -> list[int]:
    """Per row, the token where ``uniform`` falls in the cumulative distribution of ``values`` (in ``order``)."""
    import torch

    cumulative = values.cumsum(-1)
    u = torch.tensor(uniform, device=values.device, dtype=cumulative.dtype)
    position = torch.searchsorted(cumulative, (u * cumulative[:, -1])[:, None], right=True).clamp(max=values.shape[-1] - 1)
    return order.gather(1, position)[:, 0].tolist()


def _top_k_probs(logits, temperature, top_k: int):
    """Each row's distribution over the whole vocabulary after temperature and top-k (as transformers does: the k
    likeliest and any token tied with the k-th, renormalized); ``top_k`` 0 keeps every token."""
    import torch

    probs = torch.softmax(logits.float() / temperature[:, None], dim=-1)
    if 0 < top_k < probs.shape[-1]:
        kth = probs.topk(top_k, dim=-1).values[:, -1:]
        probs = probs * (probs >= kth)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def _top_k_nucleus(logits, temperature, top_k: int, top_p, spare: int = TIE_SPARE):
    """``_nucleus`` of ``_top_k_probs`` computed on each row's ``top_k + spare`` likeliest tokens only.

    With a top-k only the k likeliest tokens can be drawn, so the softmax, the renormalization and the nucleus need
    only those: one partial sort of the logits instead of several passes over the vocabulary. The ``spare``
    candidates past the k-th keep a token tied with it, as the full path does. Returns (served, values, order):
    ``served[i]`` is False for a row whose tie reaches past the spare candidates, and for every row when ``top_k``
    is 0 or leaves no room; those rows take the full path. A served row's result equals the full path's up to float
    rounding of the softmax's normalizer (~1e-7).
    """
    import torch

    width = top_k + spare
    if top_k == 0 or width >= logits.shape[-1]:
        return torch.zeros(len(logits), dtype=torch.bool, device=logits.device), None, None
    values, order = (logits.float() / temperature[:, None]).topk(width, dim=-1)  # descending
    keep = values >= values[:, top_k - 1 : top_k]
    probs = torch.softmax(values.masked_fill(~keep, float("-inf")), dim=-1)
    nucleus = probs.cumsum(-1) - probs < top_p[:, None]
    return ~keep[:, -1], probs * nucleus, order


def _nucleus(probs, top_p, candidates: int = 512):
    """Per row, the probabilities in descending order with every token outside the top-p nucleus zeroed, and their token ids.

    The nucleus is looked for among the ``candidates`` most likely tokens (a partial sort); rows whose
    candidates do not reach their ``top_p`` are sorted in full, so the result is the same either way.
    """
    k = min(candidates, probs.shape[-1])
    values, order = probs.topk(k, dim=-1)
    # short: the candidates miss part of the nucleus (a zero last candidate means they already hold all the mass)
    short = ((values.sum(-1) < top_p) & (values[:, -1] > 0)).nonzero()[:, 0]
    if k < probs.shape[-1] and len(short):
        full_values, full_order = probs[short].sort(dim=-1, descending=True)
        values, order = _widen(values, probs.shape[-1]), _widen(order, probs.shape[-1])
        values[short], order[short] = full_values, full_order
    keep = values.cumsum(-1) - values < top_p[:, None]
    return values * keep, order


def _widen(x, width: int):
    """Pad the last dimension of ``x`` with zeros to ``width``."""
    import torch

    return torch.cat([x, x.new_zeros(*x.shape[:-1], width - x.shape[-1])], dim=-1)
