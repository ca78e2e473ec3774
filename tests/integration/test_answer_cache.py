"""Main-LLM answers cached around a backend (CachingBackend), on the real default model with two adapters."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from modplural.assembly import StackSpec, assemble
from modplural.backends.base import Backend, Decoding, GenerateRequest, NextTokenRequest, OptionRequest, TokenScorer, TopTokenBackend
from modplural.backends.caching import CachingBackend, answer_key
from modplural.errors import ModPluralError
from modplural.message_cache import MessageCache
from modplural.methods import ModularPluralism
from tests.helpers import write_registry

CHAT = ({"role": "user", "content": "Should sugary drinks be taxed?"},)
GREEDY = Decoding(max_new_tokens=6)
SEEDED = Decoding(max_new_tokens=6, temperature=1.0, top_p=0.9, seed=3)
PRIMITIVES = ("generate", "option_probs", "next_tokens")


def count_calls(backend, set_attribute=setattr) -> list[tuple[str, list]]:
    """Wrap ``backend``'s primitives so that each call is logged as (primitive, requests)."""
    log: list[tuple[str, list]] = []
    for name in PRIMITIVES:
        def counted(requests, name=name, original=getattr(backend, name)):
            log.append((name, list(requests)))
            return original(requests)

        set_attribute(backend, name, counted)
    return log


@pytest.fixture
def log(backend, monkeypatch):
    """The session backend's calls during one test."""
    return count_calls(backend, monkeypatch.setattr)


@pytest.fixture
def cache(tmp_path):
    return MessageCache(tmp_path / "cache.sqlite")


def requests():
    generate = [GenerateRequest(messages=CHAT, decoding=GREEDY), GenerateRequest(prompt="Sugar taxes are", adapter="alpha", decoding=SEEDED)]
    options = [OptionRequest(labels=("A", "B", "C"), messages=CHAT, answer_prefix="Answer: ("), OptionRequest(labels=("1", "2"), prompt="1 or 2?", adapter="beta")]
    tops = [NextTokenRequest(messages=CHAT, answer_prefix="Answer:", k=5)]
    return generate, options, tops


def ask_all(main):
    generate, options, tops = requests()
    return main.generate(generate), main.option_probs(options), main.next_tokens(tops)


class Minimal:
    """A backend with the three required primitives only."""

    def generate(self, requests):
        return ["text" for _ in requests]

    def option_probs(self, requests):
        raise NotImplementedError

    def adapter_identity(self, adapter):
        return "minimal"


def test_a_repeated_call_is_read_back_without_calling_the_backend(backend, log, cache):
    uncached = ask_all(backend)
    log.clear()
    main = CachingBackend(backend, cache)
    first = ask_all(main)
    assert [(name, len(r)) for name, r in log] == [("generate", 2), ("option_probs", 2), ("next_tokens", 1)]
    assert (main.hits, main.misses, len(cache)) == (0, 5, 5)
    log.clear()
    second = ask_all(main)
    rerun = ask_all(CachingBackend(backend, MessageCache(cache.path)))  # another process on the same file
    assert log == [] and main.hits == 5
    assert first == second == rerun == uncached
    for a, b in zip(second[1], uncached[1]):
        assert dataclasses.astuple(a) == dataclasses.astuple(b) and type(a) is type(b)  # labels, probs, mass and unread
    assert all(isinstance(pair, tuple) for pair in second[2][0])


def test_keys_cover_identity_request_and_decoding(backend):
    [greedy, _], [option, _], [top] = requests()
    base = backend.adapter_identity(None)
    key = answer_key("generate", base, greedy)
    variants = [
        answer_key("generate", backend.adapter_identity("alpha"), greedy),
        answer_key("generate", base, dataclasses.replace(greedy, decoding=Decoding(max_new_tokens=7))),
        answer_key("generate", base, dataclasses.replace(greedy, decoding=SEEDED)),
        answer_key("generate", base, dataclasses.replace(greedy, decoding=dataclasses.replace(SEEDED, seed=4))),
        answer_key("generate", base, dataclasses.replace(greedy, messages=None, prompt="Should sugary drinks be taxed?")),
        answer_key("option_probs", base, option),
        answer_key("option_probs", base, dataclasses.replace(option, labels=("A", "B"))),
        answer_key("option_probs", base, dataclasses.replace(option, answer_prefix="Answer: ")),
        answer_key("option_probs", backend.adapter_identity("beta"), option),
        answer_key("next_tokens", base, top),
        answer_key("next_tokens", base, dataclasses.replace(top, k=6)),
    ]
    assert len({key, *variants}) == len(variants) + 1
    assert answer_key("generate", base, dataclasses.replace(greedy, adapter="alpha")) == key  # the name is not the key: the identity is
    # keys are stable across releases (a changed key silently empties every user's cache)
    pinned = GenerateRequest(messages=({"role": "user", "content": "Hi?"},), adapter="alpha", decoding=Decoding(max_new_tokens=200, temperature=1.0, top_p=0.9, seed=7, top_k=50))
    assert answer_key("generate", "HuggingFaceTB/SmolLM2-135M-Instruct+alpha:abc", pinned) == "generate:3937ec811f1c580b5b1d4de66fe730c3fd433a410c4745a11d7a02f7de07ecd7"


def test_a_sampled_request_without_a_seed_is_never_cached(backend, log, cache):
    unseeded = GenerateRequest(messages=CHAT, decoding=dataclasses.replace(SEEDED, seed=None))
    assert answer_key("generate", backend.adapter_identity(None), unseeded) is None
    main = CachingBackend(backend, cache)
    main.generate([unseeded, GenerateRequest(messages=CHAT, decoding=GREEDY)])
    main.generate([unseeded, GenerateRequest(messages=CHAT, decoding=GREEDY)])
    assert [len(r) for _, r in log] == [2, 1] and log[1][1] == [unseeded]
    assert (main.hits, main.misses, len(cache)) == (1, 3, 1)


def test_a_mixed_batch_computes_only_the_misses_once_and_keeps_request_order(backend, log, cache):
    q = [OptionRequest(labels=labels, messages=({"role": "user", "content": f"Question {i}?"},), answer_prefix="Answer: ")
         for i, labels in enumerate([("A", "B"), ("1", "2"), ("X", "Y", "Z"), ("yes", "no")])]
    expected = [backend.option_probs([r])[0] for r in q]
    main = CachingBackend(backend, cache)
    main.option_probs([q[1], q[3]])
    log.clear()
    out = main.option_probs([q[0], q[1], q[2], q[0], q[3]])
    assert log == [("option_probs", [q[0], q[2]])]
    assert [r.labels for r in out] == [q[i].labels for i in (0, 1, 2, 0, 3)]
    for result, i in zip(out, (0, 1, 2, 0, 3)):
        assert result.probs == pytest.approx(expected[i].probs, abs=1e-3)  # batched with other rows: padding moves the last digits
    assert (main.hits, main.misses) == (2, 4)  # the repeated q[0] is computed once: neither read from the cache nor computed twice


@pytest.mark.parametrize("primitive, stored", [
    ("option_probs", "{not json"),
    ("option_probs", '{"labels": ["A", "B", "C"], "probs": [0.5, 0.5], "mass": 1.0, "unread": 0.0}'),
    ("option_probs", '{"labels": ["A", "B", "C"], "probs": [0.2, 0.3, "0.5"], "mass": 1.0, "unread": 0.0}'),
    ("option_probs", '{"labels": ["A", "B", "C"], "probs": [NaN, NaN, NaN], "mass": 1.0, "unread": 0.0}'),
    ("option_probs", '{"labels": ["A", "B", "C"], "probs": [0.5, 0.5, 0.0], "mass": Infinity, "unread": 0.0}'),
    ("option_probs", '{"labels": ["A", "B", "C"], "probs": [0.0, 0.0, 0.0], "mass": 1.0, "unread": 0.0}'),
    ("option_probs", '{"labels": ["A", "B", "C"], "probs": [1.5, -0.5, 0.0], "mass": 1.0, "unread": 0.0}'),
    ("option_probs", '{"labels": ["A", "B", "C"], "probs": [0.5, 0.5, 0.0], "mass": 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000, "unread": 0.0}'),  # beyond any float
    ("option_probs", '{"labels": ["A", "B", "C"], "probs": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], "mass": 1.0, "unread": 0.0}'),  # nested thousands deep
    ("next_tokens", '[["A", 0.5], 7]'),
    ("generate", "123"),
])
def test_a_stored_answer_that_does_not_read_back_is_a_one_line_error(backend, log, cache, primitive, stored):
    request = {"generate": requests()[0][0], "option_probs": requests()[1][0], "next_tokens": requests()[2][0]}[primitive]
    cached = CachingBackend(backend, cache)
    cache.put_many({cached.key(primitive, request): stored})
    with pytest.raises(ModPluralError) as error:
        getattr(cached, primitive)([request])
    message = str(error.value)
    assert "\n" not in message and f"message cache {cache.path}: a cached {primitive} answer does not read back" in message and "--no-cache" in message
    assert log == []  # never silently recomputed


def test_modular_pluralism_reruns_from_the_cache_through_assembly(tmp_path, adapter_dirs):
    spec = StackSpec(registry=write_registry(tmp_path / "registry.yaml", adapter_dirs), device="cpu", dtype="float32", cache=tmp_path / "cache.sqlite",
                     decoding=Decoding(max_new_tokens=6, temperature=1.0, top_p=0.9, seed=0))

    def run():
        main, pool = assemble(spec)
        calls = count_calls(main.inner)  # the raw backend behind both wrappers: the pool's and the main LLM's
        result = ModularPluralism(main, pool, {"base": "modplural", "main_tokens": 6}).distributional("Should sugary drinks be taxed?", ["Yes", "No"])
        return result.to_dict(), calls, main, pool

    first, calls, main, pool = run()
    assert main.inner is pool.backend.inner and main.misses > 0 and pool.generated == 2
    assert sum(len(r) for _, r in calls) == main.misses + pool.generated  # one backend computed both
    second, calls, main, pool = run()
    assert calls == [] and main.misses == 0 and pool.generated == 0
    assert second == first


def test_the_wrapper_has_exactly_what_the_backend_has(backend, cache):
    minimal = CachingBackend(Minimal(), cache)
    assert isinstance(minimal, Backend) and not isinstance(minimal, (TopTokenBackend, TokenScorer))
    assert not hasattr(minimal, "next_tokens") and not hasattr(minimal, "tokenizer") and not hasattr(minimal, "adapters")
    local = CachingBackend(backend, cache)
    assert isinstance(local, TopTokenBackend) and isinstance(local, TokenScorer)
    for name in ("next_tokens", "token_nll", "tokenizer"):  # found without __getattr__, as isinstance looks them up from Python 3.12
        inspect.getattr_static(local, name)
    assert local.adapters == ["alpha", "beta"] and local.loaded is backend.loaded and local.stats is backend.stats
    assert local.token_nll == backend.token_nll and local.adapter_identity("alpha") == backend.adapter_identity("alpha")


def test_answers_from_other_kernels_are_not_served(backend, tmp_path):
    """Prepacked weights round differently from the plain kernel: their answers are kept apart."""
    from modplural.backends.packed_linear import packing_available

    class PlainKernels:  # the same model, as the engine with packing off would report it
        kernels = "plain"

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

    assert backend.kernels == ("onednn-packed" if packing_available("cpu", "float32") else "plain")
    cache = MessageCache(tmp_path / "cache.sqlite")
    request = GenerateRequest(prompt="Is fluoride safe?", decoding=Decoding(max_new_tokens=3))
    CachingBackend(backend, cache).generate([request])
    same, other = CachingBackend(backend, cache), CachingBackend(PlainKernels(backend), cache)
    same.generate([request])
    other.generate([request])
    assert (same.hits, same.misses) == (1, 0)
    assert (other.hits, other.misses) == (0, 1) if backend.kernels != "plain" else (1, 0)


def test_answers_from_other_numerics_are_not_served(backend, tmp_path):
    """The same weights on another dtype give other numbers: a local model's answer keys hold its device and dtype."""
    from types import SimpleNamespace

    class Relabelled:  # the same weights and identity, loaded in another dtype
        def __init__(self, inner):
            self.inner, self.loaded = inner, SimpleNamespace(device=inner.loaded.device, dtype="bfloat16")

        def __getattr__(self, name):
            return getattr(self.inner, name)

    cache = MessageCache(tmp_path / "cache.sqlite")
    request = GenerateRequest(prompt="Is fluoride safe?", decoding=Decoding(max_new_tokens=3))
    CachingBackend(backend, cache).generate([request])
    other = CachingBackend(Relabelled(backend), cache)
    assert other.adapter_identity(None) == backend.adapter_identity(None)
    other.generate([request])
    assert (other.hits, other.misses) == (0, 1)

