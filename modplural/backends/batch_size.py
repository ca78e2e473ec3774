"""How many rows to decode together when the batch size is ``"auto"``.

Rows are limited by memory (KV cache, the widest activation, fp32 logits of one position per row) and by
a cap past which bigger batches stop paying: on the reference 2-core CPU, 128 rows gave 184 tokens/s,
64 rows 170 and 256 rows 183 (SmolLM2-135M, 8 adapters, 64 new tokens; ``experiments/performance/benchmark.py``).
"""

from __future__ import annotations

from modplural.validation import parse_batch_size

__all__ = ["CAPS", "auto_rows", "bytes_per_row", "forward_tokens", "parse_batch_size"]

CAPS = {"cpu": 128, "cuda": 512}
# A single forward pass slows down past this many tokens on a CPU, where its activations stop fitting the
# caches: 64 answer prompts (137 tokens each) took 23.4 s in one pass, 14.5 s in passes of 32 rows. Scoring
# batches are cut to stay under it; generation keeps its rows (decoding needs them) and reads the prompts
# in column chunks of this many tokens instead.
SCORING_TOKENS = {"cpu": 4096, "cuda": 1 << 16}


def forward_tokens(device: str) -> int:
    """The most tokens one forward pass should carry on ``device``."""
    return SCORING_TOKENS["cuda" if device.startswith("cuda") else "cpu"]
MEMORY_SHARE = {"cpu": 0.2, "cuda": 0.6}  # of the memory available when the batch is planned


def bytes_per_row(config, tokens: int, element_size: int, logit_positions: int = 1) -> int:
    """Memory one row of ``tokens`` positions needs: its KV cache, the widest activation, its fp32 logits (and a copy)."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv = 2 * text.num_hidden_layers * kv_heads * head_dim * element_size * tokens
    widest = max(text.hidden_size * 4, getattr(text, "intermediate_size", 0) * 2)
    return kv + widest * element_size * tokens + text.vocab_size * 8 * logit_positions


def available_bytes(device: str) -> int:
    """Free memory on ``device`` (CUDA: the driver's count; CPU: MemAvailable)."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def auto_rows(config, tokens: int, element_size: int, device: str, logit_positions: int = 1, scoring: bool = False) -> int:
    """Rows per batch for sequences of ``tokens`` positions on ``device`` (``logit_positions`` logits rows kept per row).

    ``scoring``: one forward pass and no decoding, so the batch is also kept under ``SCORING_TOKENS``.
    """
    kind = "cuda" if device.startswith("cuda") else "cpu"
    budget = available_bytes(device) * MEMORY_SHARE[kind]
    rows = min(CAPS[kind], int(budget // bytes_per_row(config, tokens, element_size, logit_positions)))
    if scoring:
        rows = min(rows, SCORING_TOKENS[kind] // max(tokens, 1))
    return max(1, rows)
