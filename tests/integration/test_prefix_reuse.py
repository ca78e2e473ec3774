"""Prefix KV reuse in the batched engine: the plan, and reuse on vs off on the real model with the shipped adapters.

Tolerance: with reuse, a shared prefix's keys and values come from a smaller batch (its distinct heads) and the
rows then run fewer columns; different matmul shapes change the order of floating-point summation, so option
probabilities may differ in the last digits. They must agree as closely as batched and one-at-a-time scoring
must (``test_backend_local``: 1e-4); greedy text must be identical."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modplural.backends import Decoding, GenerateRequest, OptionRequest
from modplural.backends.base import NextTokenRequest
from modplural.backends.prefix_cache import MIN_PREFIX, plan_prefixes

SHIPPED = Path(__file__).resolve().parents[2] / "community_models" / "SmolLM2-135M-Instruct"
ADAPTERS = [None, "patients", "clinicians"]
PASSAGE = ("Passage: Routine childhood vaccines prevent measles, polio and whooping cough. Health agencies recommend them "
           "for every child unless a doctor finds a medical reason not to, and most parents follow that schedule.")
QUESTIONS = ["Should parents be allowed to refuse vaccines?", "Should schools require vaccination records?"]
OPENING = "Answer the question below in one short sentence, thinking about the people it affects the most. Question:"


@pytest.fixture(scope="module")
def shipped():
    from modplural.backends.local import LocalBackend

    return LocalBackend("default", adapters={n: SHIPPED / n for n in ADAPTERS if n}, device="cpu", dtype="float32", batch_size=16)


def _inputs() -> list[dict]:
    """Prompts that share a long prefix (a passage), a short one (the chat template's system turn), none, and a raw
    prompt that is wholly the prefix of another; the same prompts under different adapters."""
    chat = [{"messages": ({"role": "user", "content": f"{PASSAGE}\n\n{q}"},), "adapter": a} for q in QUESTIONS for a in ADAPTERS]
    chat += [{"messages": ({"role": "user", "content": q},), "adapter": a} for q in ("Is a sugar tax fair?", "Hi") for a in ADAPTERS[:2]]
    raw = [{"prompt": OPENING, "adapter": "clinicians"}, {"prompt": f"{OPENING} Is fluoride safe?", "adapter": "clinicians"}, {"prompt": "Hello", "adapter": None}]
    return chat + raw


def _switched(backend, reuse: bool, call):
    """``call()`` with prefix reuse set to ``reuse``, and the prompt tokens it reused."""
    backend.prefix_reuse, before = reuse, backend.stats.reused_prompt_tokens
    try:
        return call(), backend.stats.reused_prompt_tokens - before
    finally:
        backend.prefix_reuse = True


def test_plan_shares_heads_per_adapter_and_never_a_rows_last_token():
    long, other = list(range(100, 140)), list(range(500, 520))
    seqs = [long + [1, 2], long + [3], long[:2] + [4], other + [7], other + [8, 9], [5, 6, 7], long[:30]]
    adapters = ["a", "a", "b", "a", "a", "a", "a"]
    plan = plan_prefixes(seqs, adapters)
    assert plan.start == 42 - 3  # the rows run the columns of the longest suffix ([5, 6, 7] and "b"'s row: 3 tokens)
    assert plan.row_length == [39, 38, 0, 18, 19, 0, 27]
    assert plan.row_head[2] == plan.row_head[5] == -1  # "b" shares no prefix with a row of its own adapter; [5, 6, 7] none
    assert plan.row_head[0] == plan.row_head[1] == plan.row_head[6] == 0 and plan.row_head[3] == plan.row_head[4] == 1
    assert plan.heads == [long[:39], other[:19]] and plan.head_adapters == ["a", "a"]  # a head serves the heads it extends
    assert plan.reused == sum(plan.row_length) - 39 - 19
    whole = plan_prefixes([long, long + [1]], ["a", "a"])  # a row that is wholly the other's prefix keeps its last token
    assert whole.row_length == [len(long) - 1, len(long)] and whole.heads == [long]
    assert plan_prefixes([long, long], ["a", "b"]) is None  # LoRA changes keys and values: no sharing across adapters
    assert plan_prefixes([long[: MIN_PREFIX - 1] + [1], long[: MIN_PREFIX - 1] + [2]], ["a", "a"]) is None


def test_reuse_on_and_off_generate_alike_on_mixed_adapters_and_prefix_lengths(shipped):
    inputs = _inputs()
    seqs = [shipped._encode(i.get("messages"), i.get("prompt")) for i in inputs]
    plan = plan_prefixes(seqs, [i["adapter"] for i in inputs])
    lengths = {length for head, length in zip(plan.row_head, plan.row_length) if head >= 0}
    assert len(lengths) >= 3 and -1 in plan.row_head  # one batch: rows reusing prefixes of several lengths, and a row reusing none

    generate = [GenerateRequest(**i, decoding=Decoding(max_new_tokens=8)) for i in inputs]
    (off, reused_off), (on, reused_on) = (_switched(shipped, reuse, lambda: shipped.generate(generate)) for reuse in (False, True))
    assert on == off and reused_off == 0 and reused_on == plan.reused > 0
    assert len({t for t, i in zip(on, inputs) if i.get("messages") == inputs[0]["messages"]}) == 3  # the adapters differ here


def test_reuse_on_and_off_score_alike(shipped):
    """Option probabilities and top tokens on the same mixed batch, and a row that is wholly the shared prefix."""
    inputs = _inputs()
    options = [OptionRequest(labels=("A", "B", "C"), answer_prefix="\nA. Yes\nB. No\nC. It depends\nAnswer:", **i) for i in inputs]
    (off, reused_off), (on, reused_on) = (_switched(shipped, reuse, lambda: shipped.option_probs(options)) for reuse in (False, True))
    assert reused_off == 0 and reused_on > 0
    for a, b in zip(on, off):
        assert max(abs(x - y) for x, y in zip(a.probs, b.probs)) < 1e-4 and abs(a.mass - b.mass) < 1e-4

    whole = [OptionRequest(labels=("Yes", "No"), prompt=OPENING, adapter="clinicians", answer_prefix=suffix) for suffix in ("", " Vaccines")]
    plan = plan_prefixes([shipped._encode(None, r.prompt, r.answer_prefix) for r in whole], ["clinicians"] * 2)
    assert plan.row_length[0] == len(shipped._encode(None, OPENING)) - 1 and plan.start == plan.row_length[1]  # one column each
    (off, _), (on, reused_on) = (_switched(shipped, reuse, lambda: shipped.option_probs(whole)) for reuse in (False, True))
    assert reused_on == plan.reused > 0 and all(abs(x - y) < 1e-4 for a, b in zip(on, off) for x, y in zip(a.probs, b.probs))

    top = [NextTokenRequest(k=5, **i) for i in inputs]
    (off, _), (on, reused_on) = (_switched(shipped, reuse, lambda: shipped.next_tokens(top)) for reuse in (False, True))
    assert reused_on > 0
    for a, b in zip(on, off):
        assert [t for t, _ in a] == [t for t, _ in b] and max(abs(p - q) for (_, p), (_, q) in zip(a, b)) < 1e-4


def test_reuse_runs_fewer_tokens_and_reports_its_memory(shipped, monkeypatch):
    """Count the token columns that reach the model: with reuse, the distinct heads once and the rows' last columns
    (read in column chunks here, as long prompts are), with the same greedy text; the heads' KV is the peak reported."""
    import modplural.backends.local as local

    monkeypatch.setattr(local, "forward_tokens", lambda device: 6 * 9)
    requests = [GenerateRequest(**i, decoding=Decoding(max_new_tokens=1)) for i in _inputs()[:6]]  # the passage rows
    seqs = [shipped._encode(r.messages, None) for r in requests]
    plan, width = plan_prefixes(seqs, [r.adapter for r in requests]), max(map(len, seqs))
    columns: list[int] = []
    hook = shipped._model.get_input_embeddings().register_forward_hook(lambda module, args, out: columns.append(args[0].numel()))
    shipped.stats.prefix_cache_peak_bytes = 0
    try:
        texts, counts = [], []
        for reuse in (False, True):
            columns.clear()
            texts.append(_switched(shipped, reuse, lambda: shipped.generate(requests))[0])
            counts.append(sum(columns))
    finally:
        hook.remove()
    assert texts[0] == texts[1] and counts[0] == len(seqs) * width
    assert counts[1] == len(plan.heads) * max(map(len, plan.heads)) + len(seqs) * (width - plan.start) < counts[0]
    config = shipped._model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_position = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * torch.float32.itemsize
    assert shipped.stats.prefix_cache_peak_bytes == len(plan.heads) * max(map(len, plan.heads)) * per_position

