"""Adapters whose weights are not finite, and logits that are not: refused at load or at the batch, naming the adapter, never spread to
other rows or stored in a cache. Every broken adapter is a shipped community adapter copied and damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modplural.backends import Decoding, GenerateRequest, OptionRequest
from modplural.backends.caching import CachingBackend
from modplural.backends.local import LocalBackend
from modplural.backends.sequential import SequentialBackend
from modplural.communities import load_registry
from modplural.errors import ModPluralError
from modplural.message_cache import MessageCache
from modplural.pool import CommunityPool
from tests.helpers import assert_one_line_error, run_cli, write_registry

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "community_models" / "SmolLM2-135M-Instruct"


def _copy(name: str, dest: Path) -> Path:
    """A writable copy of a shipped community adapter."""
    return Path(shutil.copytree(SHIPPED / name, dest))


def _poison(adapter: Path, value: float = float("nan")) -> str:
    """Fill the adapter's first tensor with ``value``; returns that tensor's name."""
    file = adapter / "adapter_model.safetensors"
    weights = load_file(str(file))
    key = sorted(weights)[0]
    weights[key] = torch.full_like(weights[key], value)
    save_file(weights, str(file))
    return key


def _break(adapter: Path, how: str) -> str:
    """Corrupt the adapter in one of several ways; returns what the error must name."""
    weights, config = adapter / "adapter_model.safetensors", adapter / "adapter_config.json"
    if how == "nan":
        return _poison(adapter)
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return str(weights)
    if how == "garbage":
        weights.write_bytes(b"this is not a safetensors file " * 40)
        return str(weights)
    config.write_text("{'r': 8, lora_alpha: 16")
    return str(config)


def _nan_factors(backend: LocalBackend, adapter: str) -> None:
    """Bypass the load check: overwrite a loaded adapter's factors in the LoRA bank with NaN."""
    index = backend._bank.names.index(adapter)
    for layer in backend._bank._layers.values():
        layer.factors[index].a.fill_(float("nan"))
        layer.factors[index].b.fill_(float("nan"))


@pytest.mark.parametrize("engine", [LocalBackend, SequentialBackend])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_adapter_weights_are_refused_at_load(loaded, tmp_path, engine, value):
    broken = _copy("public_health_agencies", tmp_path / "broken")
    tensor = _poison(broken, value)
    backend = engine(loaded=loaded, adapters={"patients": SHIPPED / "patients"})
    with pytest.raises(ModPluralError, match=rf"adapter 'broken': tensor {tensor} in .* holds NaN or infinite values"):
        backend.load_adapter("broken", broken)
    assert backend.adapters == ["patients"]


@pytest.mark.parametrize("how, command", [("nan", "check"), ("truncated", "ask"), ("garbage", "check"), ("config", "ask")])
def test_cli_broken_adapter_is_one_line(tmp_path, how, command):
    broken = _copy("public_health_agencies", tmp_path / "broken")
    named = _break(broken, how)
    registry = str(write_registry(tmp_path / "registry.yaml", {"patients": SHIPPED / "patients", "broken": broken}))
    if command == "check":
        result = run_cli("communities", "check", "--registry", registry, "--device", "cpu")
    else:
        result = run_cli("ask", "Is fluoride safe?", "--communities", "patients,broken", "--registry", registry, "--device", "cpu", "--no-cache")
    assert_one_line_error(result, "adapter 'broken'", named)
    assert result.returncode == 2


def test_an_adapter_with_nan_factors_cannot_change_other_rows(loaded):
    """Rows of a NaN adapter stay NaN; the base and healthy rows are exactly what the same batch gives with that
    adapter intact. (The same batch, not one without the row: a batch of another size sums in another order,
    which moved these logits by 4e-5 on an AVX-512/AMX Xeon with either kernel, NaN or not.)"""
    adapters = {name: SHIPPED / name for name in ("patients", "clinicians", "public_health_agencies")}
    backend = LocalBackend(loaded=loaded, adapters=adapters)
    ids = backend.tokenizer("Vaccines for children are", return_tensors="pt")["input_ids"]
    rows = [None, "patients", "public_health_agencies", "clinicians"]
    with torch.inference_mode():
        with backend._rows(rows):
            intact = backend._model(input_ids=ids.repeat(4, 1)).logits[:, -1]
        _nan_factors(backend, "public_health_agencies")
        with backend._rows(rows):
            mixed = backend._model(input_ids=ids.repeat(4, 1)).logits[:, -1]
    assert mixed[2].isnan().all() and torch.isfinite(intact).all()  # the injected NaN really reaches its own row
    assert torch.equal(mixed[[0, 1, 3]], intact[[0, 1, 3]])
    assert (intact[1] - intact[0]).abs().max() > 1e-2 and (intact[3] - intact[1]).abs().max() > 1e-2  # the adapters do act


def test_non_finite_logits_raise_naming_the_adapter_and_nothing_is_cached(loaded, tmp_path):
    registry = load_registry(write_registry(tmp_path / "registry.yaml", {n: SHIPPED / n for n in ("patients", "clinicians")}))
    backend = LocalBackend(loaded=loaded, adapters={c.name: c.adapter for c in registry.communities})
    _nan_factors(backend, "clinicians")
    cache = MessageCache(tmp_path / "messages.sqlite")
    pool = CommunityPool(CachingBackend(backend, cache), registry.select(), Decoding(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=0))
    with pytest.raises(ModPluralError, match="adapter 'clinicians' produced NaN or infinite logits"):
        pool.messages(["Is fluoride in tap water safe?"])
    assert len(cache) == 0 and pool.generated == 0
    with pytest.raises(ModPluralError, match="adapter 'clinicians' produced NaN or infinite logits"):
        backend.option_probs([OptionRequest(labels=("A", "B"), prompt="A or B? Answer:", adapter=a) for a in ("patients", "clinicians")])
    [message] = pool.subset(["patients"]).messages(["Is fluoride in tap water safe?"])
    clean = LocalBackend("default", adapters={"patients": SHIPPED / "patients"}, device="cpu", dtype="float32")
    [expected] = CommunityPool(clean, registry.select(["patients"]), pool.decoding).messages(["Is fluoride in tap water safe?"])
    assert message == expected and len(cache) == 1


def test_likelihoods_refuse_non_finite_logits_but_not_padding(loaded):
    backend = LocalBackend(loaded=loaded, adapters={n: SHIPPED / n for n in ("patients", "clinicians")})
    texts = ["Vaccines save lives.", "Sugar taxes change what families in poor countries buy every week."]
    blocks = backend.tokenizer(texts, add_special_tokens=False)["input_ids"]  # different lengths: one block is left-padded
    nll = backend.token_nll(blocks, ["patients", "clinicians"])
    assert [count for _, count in nll] == [len(b) - 1 for b in blocks] and all(value > 0 for value, _ in nll)
    _nan_factors(backend, "clinicians")
    with pytest.raises(ModPluralError, match="adapter 'clinicians' produced NaN or infinite logits"):
        backend.token_nll(blocks, ["patients", "clinicians"])


def test_sequential_engine_refuses_non_finite_logits(loaded):
    backend = SequentialBackend(loaded=loaded, adapters={n: SHIPPED / n for n in ("patients", "clinicians")})
    for name, parameter in backend._model.named_parameters():
        if ".clinicians." in name:
            parameter.data.fill_(float("nan"))
    chat = ({"role": "user", "content": "Should parents be allowed to refuse vaccines for their children?"},)
    request = lambda adapter: GenerateRequest(messages=chat, adapter=adapter, decoding=Decoding(max_new_tokens=4, temperature=1.0, seed=1))  # noqa: E731
    with pytest.raises(ModPluralError, match="adapter 'clinicians' produced NaN or infinite logits"):
        backend.generate([request("clinicians")])
    assert backend.generate([request("patients")])[0]

