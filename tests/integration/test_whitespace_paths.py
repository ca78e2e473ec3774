"""Whitespace paths as tree columns against copied rows, on small random models: the same logits at every depth."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

from modplural.backends.kv_cache import preallocated_cache
from modplural.backends.whitespace_paths import RowCopies, TreeColumns

SIZES = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
MODELS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM), "mistral": (MistralConfig, MistralForCausalLM)}
LENGTHS = [7, 4, 6, 3]  # four left-padded prompts
# (parents, tokens) per depth: prompt 1 has no path, prompt 2 three, paths die out at different depths, and the
# third depth's frontier is wider than the room the cache reserved (it has to grow)
STEPS = [([0, 0, 2, 2, 2, 3], [5, 6, 5, 7, 8, 9]), ([1, 3, 5, 5], [5, 6, 7, 5]), ([0, 3, 3], [9, 8, 5])]


def _model(kind: str, attention: str):
    config_class, model_class = MODELS[kind]
    torch.manual_seed(0)
    config = config_class(**SIZES, **({"sliding_window": None} if kind == "mistral" else {}))
    config._attn_implementation = attention
    return model_class(config).eval()


def _forward(model):
    keyword = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def forward(ids, mask, positions, cache, every_column=False):
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=0 if every_column else 1,
                    **{keyword: cache})
        return out.logits if every_column else out.logits[:, -1]

    return forward


def _tree_logits(model, strategy, ids, mask, positions) -> list:
    cache = preallocated_cache(model.config, ids.shape[1] + 3)
    forward = _forward(model)
    additive = () if strategy is RowCopies else (None if model.config._attn_implementation == "sdpa" else torch.float32,)
    with torch.inference_mode():
        steps = [forward(ids, mask, positions, cache)]
        paths = strategy(forward, cache, mask, positions[:, -1:], None, *additive)
        steps += [paths.extend(torch.tensor(parents), torch.tensor(tokens)) for parents, tokens in STEPS]
    return steps


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_tree_columns_give_the_logits_of_copied_rows(kind, attention):
    model = _model(kind, attention)
    width = max(LENGTHS)
    torch.manual_seed(1)
    ids = torch.randint(10, SIZES["vocab_size"], (len(LENGTHS), width))
    mask = torch.zeros(len(LENGTHS), width, dtype=torch.long)
    for row, n in enumerate(LENGTHS):
        mask[row, width - n:] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    copied = _tree_logits(model, RowCopies, ids, mask, positions)
    tree = _tree_logits(model, TreeColumns, ids, mask, positions)
    assert [t.shape[0] for t in tree] == [len(LENGTHS)] + [len(parents) for parents, _ in STEPS]
    for depth, (a, b) in enumerate(zip(copied, tree)):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5, msg=lambda m: f"depth {depth}: {m}")
    # the paths' logits depend on the path: two different tokens after the same prompt give different logits
    assert not torch.allclose(tree[1][0], tree[1][1])


def test_followed_paths_are_the_likeliest_within_both_caps():
    from modplural.backends.local import _likeliest

    paths = torch.tensor([[0.5, 0.4, 0.3], [0.2, 0.1, 0.05], [0.45, 0.01, 0.35]], dtype=torch.float64)
    follow = (paths > 0.02).nonzero()
    node_rows = [0, 1, 0]  # nodes 0 and 2 are paths of request 0
    kept = _likeliest(follow, paths, node_rows, total=4, per_request=2)
    assert sorted(map(tuple, kept.tolist())) == [(0, 0), (1, 0), (1, 1), (2, 0)]  # request 0: its two likeliest; then request 1's
    assert _likeliest(follow, paths, node_rows, total=10, per_request=10) is follow
    assert len(_likeliest(follow, paths, node_rows, total=3, per_request=10)) == 3

