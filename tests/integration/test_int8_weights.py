"""Int8 weights on small random Qwen2 models (the 1.5B's architecture): close to float32, exact per row, cached, loaded.

The 1.5B itself is checked in tests/test_main_llm.py (slow) and measured in experiments/performance/lean_weights_agreement.py."""

from __future__ import annotations

import pytest

from modplural.errors import ModPluralError


def _tiny_qwen(path, seed: int = 0, outlier: float = 0.0):
    """A random 2-layer Qwen2 model saved to ``path``; ``outlier`` scales one hidden channel of the embeddings (as
    Qwen2.5's massive activations)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from modplural.models import resolve_model_source

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
        model.model.embed_tokens.weight[:, 7] *= 1 + outlier
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(resolve_model_source("default")[0]).save_pretrained(path)  # SmolLM2's tokenizer: same vocabulary size
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"), outlier=40.0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODPLURAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


def test_int8_model_is_close_to_float_and_exact_per_row(tiny, cache):
    import torch

    from modplural.backends.int8_weights import is_int8
    from modplural.models import load_model

    float_model = load_model(str(tiny), device="cpu", dtype="float32", weight_format="float")
    int8_model = load_model(str(tiny), device="cpu", weight_format="int8")
    assert is_int8(int8_model.model) and not is_int8(float_model.model)
    assert int8_model.weight_format == "int8-rowwise-v1" and int8_model.identity == f"{float_model.identity}#int8-rowwise-v1"
    ids = torch.randint(0, 49152, (6, 20), generator=torch.Generator().manual_seed(1))
    reference, quantized = _logits(float_model.model, ids), _logits(int8_model.model, ids)
    p, q = reference.softmax(-1), quantized.softmax(-1)
    assert (p - q).abs().max() < 0.01 * p.max()  # random weights: the largest probability moves by well under 1% of itself
    rows = torch.cat([_logits(int8_model.model, ids[i : i + 1]) for i in range(6)])
    assert torch.equal(rows, quantized)  # exact integer products: a row's logits do not depend on its batch
    shuffled = _logits(int8_model.model, ids[[5, 3, 1, 0, 2, 4]])
    assert torch.equal(shuffled[3], quantized[0])


def test_two_passes_remove_the_error_of_a_large_channel(tiny):
    """One int8 pass per row loses the small channels beside a large one; the residual pass restores them."""
    import torch

    from modplural.backends.int8_weights import _two_passes

    rows = torch.randn(4, 256)
    rows[:, 3] = 500.0
    q, scales = _two_passes(rows, unsigned=False)
    one = q[:4].float() * scales[:4]
    two = one + q[4:].float() * scales[4:]
    small = [i for i in range(256) if i != 3]
    assert (one - rows)[:, small].abs().max() > 0.5  # one pass: steps of 500 / 127 ~ 3.9
    assert (two - rows).abs().max() < 500 / 127 / 127  # two passes: within a residual step
    unsigned, same = _two_passes(rows, unsigned=True)
    assert torch.equal(unsigned.to(torch.int16) - 128, q.to(torch.int16)) and torch.equal(same, scales)


def test_both_integer_kernels_give_the_same_numbers(tiny, cache):
    """oneDNN's prepacked u8s8 product (where it is exact) and torch._int_mm agree bit for bit."""
    import torch

    import modplural.backends.int8_weights as int8
    from modplural.models import load_model

    if not int8._onednn_exact():
        pytest.skip("oneDNN's u8s8 product is not exact on this CPU (no VNNI): only _int_mm runs here")
    model = load_model(str(tiny), device="cpu", weight_format="int8").model
    ids = torch.randint(0, 49152, (3, 12), generator=torch.Generator().manual_seed(2))
    packed = _logits(model, ids)
    linears = [m for m in model.modules() if type(m).__name__ == "Int8Linear"]
    assert linears and all(m._packed is not None and m.weight is None for m in linears)  # no plain copy kept beside the packed one
    assert not any(name.endswith("proj.weight") for name, _ in model.named_buffers())
    saved, int8._EXACT = int8._EXACT, False
    try:
        plain = load_model(str(tiny), device="cpu", weight_format="int8").model
        linears = [m for m in plain.modules() if type(m).__name__ == "Int8Linear"]
        assert all(m._packed is None and m.weight is not None for m in linears)
        assert torch.equal(_logits(plain, ids), packed)
    finally:
        int8._EXACT = saved


def test_the_int8_cache_is_written_once_and_loads_the_same_model(tiny, cache):
    import torch

    from modplural.int8_cache import STATE_FILE, int8_dir
    from modplural.models import load_model

    first = load_model(str(tiny), device="cpu", weight_format="int8")
    directory = int8_dir(tiny)
    stamp = (directory / STATE_FILE).stat().st_mtime_ns
    second = load_model(str(tiny), device="cpu", weight_format="int8")
    assert (directory / STATE_FILE).stat().st_mtime_ns == stamp
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".tmp-")]
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    assert torch.equal(_logits(first.model, ids), _logits(second.model, ids))
    assert not any(t.is_meta for t in [*second.model.parameters(), *second.model.buffers()])
    assert second.model.get_input_embeddings().weight.dtype == torch.int8


def test_a_damaged_int8_cache_is_one_line(tiny, cache):
    from modplural.int8_cache import STATE_FILE, int8_dir
    from modplural.models import load_model

    load_model(str(tiny), device="cpu", weight_format="int8")
    state = int8_dir(tiny) / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(ModPluralError, match=r"the int8 cache .*int8_state.safetensors cannot be read .*: delete .* and load again"):
        load_model(str(tiny), device="cpu", weight_format="int8")


@pytest.mark.parametrize("damage", ["header length", "header json", "offsets", "dtype", "shape"])
def test_a_damaged_int8_cache_header_is_one_line(tiny, cache, damage):
    """The int8 state is read as a stream: every header entry is checked against the file before a tensor is read."""
    import json
    import struct

    from modplural.int8_cache import STATE_FILE, int8_dir
    from modplural.models import load_model

    load_model(str(tiny), device="cpu", weight_format="int8")
    state = int8_dir(tiny) / STATE_FILE
    raw = state.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    name = next(k for k in header if k != "__metadata__")
    if damage == "header length":
        raw = struct.pack("<Q", len(raw)) + raw[8:]
    elif damage == "header json":
        raw = raw[:8] + b"{" * length + raw[8 + length :]
    else:
        entry = header[name]
        if damage == "offsets":
            entry["data_offsets"] = [0, len(raw)]
        elif damage == "dtype":
            entry["dtype"] = "F99"
        else:
            entry["shape"] = [entry["shape"][0] + 1, *entry["shape"][1:]]
        text = json.dumps(header, separators=(",", ":")).encode()
        assert len(text) <= length
        raw = raw[:8] + text.ljust(length) + raw[8 + length :]
    state.write_bytes(raw)
    with pytest.raises(ModPluralError, match=r"^the int8 cache .*int8_state.safetensors cannot be read \(.+\): delete .* and load again$"):
        load_model(str(tiny), device="cpu", weight_format="int8")


def test_int8_is_refused_where_it_cannot_run(tiny):
    from modplural.models import load_model

    with pytest.raises(ModPluralError, match="int8 weights compute in float32"):
        load_model(str(tiny), device="cpu", dtype="bfloat16", weight_format="int8")
    with pytest.raises(ModPluralError, match="int8 weights need a local model"):
        load_model("someone/some-model", device="cpu", weight_format="int8")


def test_an_adapter_runs_on_int8_weights_in_mixed_batches(tiny, cache, tmp_path):
    """The LoRA bank's hooks work on int8 layers: the adapter's row changes, the base row matches the base alone."""
    from modplural.backends.base import OptionRequest
    from modplural.backends.local import LocalBackend
    from tests.helpers import make_random_adapter

    adapter = make_random_adapter(tmp_path / "lora", seed=3, model=str(tiny))
    backend = LocalBackend(str(tiny), adapters={"a": adapter}, device="cpu", weight_format="int8", batch_size=4)
    assert backend.kernels == "int8-rowwise-v1"
    request = OptionRequest(labels=("A", "B"), prompt="Question: yes or no?\nA. Yes B. No\nAnswer:")
    base, with_adapter = backend.option_probs([request, OptionRequest(labels=("A", "B"), prompt=request.prompt, adapter="a")])
    assert base.probs != with_adapter.probs
    alone = backend.option_probs([request])[0].probs
    assert max(abs(a - b) for a, b in zip(alone, base.probs)) < 1e-6  # the LoRA deltas are float products: mixed batches agree to float error
    assert backend.adapter_identity(None).endswith("#int8-rowwise-v1")

