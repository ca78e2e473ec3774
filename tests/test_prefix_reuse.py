"""Prefix KV reuse in the batched engine: the plan."""

from __future__ import annotations

from modplural.backends.prefix_cache import MIN_PREFIX, plan_prefixes


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
