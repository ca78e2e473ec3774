"""oneDNN-prepacked linear weights: the batched engine with them gives what it gives with the plain kernel."""

from __future__ import annotations

import pytest
import torch

from modplural.backends import Decoding, GenerateRequest, OptionRequest
from modplural.backends.local import LocalBackend
from modplural.backends.packed_linear import pack_linears, packing_available

pytestmark = pytest.mark.skipif(not packing_available("cpu", "float32"), reason="this torch build has no oneDNN linear kernels")

QUESTIONS = ["Should parents be allowed to refuse vaccines for their children?", "Is assisted suicide ethical?", "Hi"]


def test_packed_engine_equals_plain_engine(adapter_dirs):
    packed = LocalBackend("default", device="cpu", dtype="float32", batch_size=8)
    for name, path in adapter_dirs.items():  # adapters loaded onto the packed layers, after packing
        packed.load_adapter(name, path)
    plain = LocalBackend("default", adapters=adapter_dirs, device="cpu", dtype="float32", batch_size=8, packed_weights=False)
    assert (packed.kernels, plain.kernels) == ("onednn-packed", "plain")
    adapters = [None, "alpha", "beta"]
    generate = [GenerateRequest(messages=[{"role": "user", "content": q}], adapter=a, decoding=Decoding(max_new_tokens=24)) for q in QUESTIONS for a in adapters]
    texts = packed.generate(generate)
    assert texts == plain.generate(generate)
    assert len(set(texts)) > 3  # adapters and prompts change the text: the comparison is not between empty outputs
    options = [OptionRequest(labels=("A", "B"), messages=[{"role": "user", "content": f"{q}\nA. Yes\nB. No\nAnswer with one letter."}], adapter=a)
               for q in QUESTIONS for a in adapters]
    for p, q in zip(packed.option_probs(options), plain.option_probs(options)):
        assert max(abs(x - y) for x, y in zip(p.probs, q.probs)) < 1e-5
        assert abs(p.mass - q.mass) < 1e-5
    blocks = [packed.tokenizer(q).input_ids for q in QUESTIONS]
    for (nll_p, n_p), (nll_q, n_q) in zip(packed.token_nll(blocks, adapters), plain.token_nll(blocks, adapters)):
        assert n_p == n_q and abs(nll_p - nll_q) < 1e-4 * max(1.0, abs(nll_q))


def test_packing_replaces_weights_in_place_and_refuses_plain_arithmetic(loaded):
    model = loaded.model
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    shapes = [tuple(m.weight.shape) for m in linears]
    x = torch.randn(2, 5, linears[0].in_features)
    with torch.no_grad():
        before = linears[0](x)
        assert pack_linears(model) == len(linears)
        after = linears[0](x)
    assert pack_linears(model) == 0  # already packed: nothing to do
    assert [tuple(m.weight.shape) for m in linears] == shapes and all(m.weight.is_mkldnn for m in linears)
    assert float((after - before).abs().max()) < 1e-4
    assert not model.get_input_embeddings().weight.is_mkldnn  # the tied vocabulary projection got its own packed copy
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.nn.functional.linear(x, linears[0].weight)  # a packed weight cannot be used by mistake as a plain one


def test_a_packed_layer_reads_its_own_bias_and_refuses_gradients():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4, bias=False))
    x = torch.randn(3, 16)
    with torch.no_grad():
        before = model(x)
        assert pack_linears(model) == 2
        assert torch.allclose(model(x), before, atol=1e-5)
        model[0].bias.zero_()  # the bias the layer computes with is its parameter (moved into its own memory)
        assert not torch.allclose(model(x), before, atol=1e-3)
    with pytest.raises(RuntimeError, match="inference only"):
        model(x.requires_grad_())


@pytest.mark.parametrize(("device", "dtype"), [("cuda", "float32"), ("cpu", "bfloat16"), ("cpu", "float16")])
def test_packing_is_only_offered_for_float32_on_a_cpu(device, dtype):
    assert not packing_available(device, dtype)

