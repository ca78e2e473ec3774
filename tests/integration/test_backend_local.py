"""The local backend on the real embedded model: batching exactness, option probabilities, adapters, errors."""

from __future__ import annotations

import json

import pytest
import torch

from modplural.backends import Decoding, GenerateRequest, OptionRequest
from modplural.backends.base import NextTokenRequest
from modplural.backends.local import LocalBackend
from modplural.errors import ModPluralError

QUESTIONS = [
    "Should parents be allowed to refuse vaccines for their children?",
    "Is assisted suicide ethical?",
    "What do you think about taxing sugary drinks to fight diabetes in low-income countries, given the burden on poor families?",
    "Hi",
]
ADAPTERS = [None, "alpha", "beta"]
LABELS = ("A", "B", "C")


def _chat(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def _option_requests() -> list[OptionRequest]:
    return [
        OptionRequest(
            labels=LABELS,
            messages=_chat(f"{q}\nA. Yes\nB. No\nC. It depends\nAnswer with one letter."),
            adapter=a,
            answer_prefix="Answer: ",
        )
        for q in QUESTIONS
        for a in ADAPTERS
    ]


def test_batched_greedy_equals_one_at_a_time(backend):
    requests = [GenerateRequest(messages=_chat(q), adapter=a, decoding=Decoding(max_new_tokens=16)) for q in QUESTIONS for a in ADAPTERS]
    batched = backend.generate(requests)  # 12 rows, batch_size 8: mixed adapters and prompt lengths in each batch
    one_by_one = [backend.generate([r])[0] for r in requests]
    assert batched == one_by_one
    assert all(batched)


def test_batched_option_probs_equal_one_at_a_time(backend):
    requests = _option_requests()
    batched = backend.option_probs(requests)
    one_by_one = [backend.option_probs([r])[0] for r in requests]
    for b, s in zip(batched, one_by_one):
        assert b.labels == LABELS
        assert max(abs(x - y) for x, y in zip(b.probs, s.probs)) < 1e-4
        assert abs(b.mass - s.mass) < 1e-4


def test_adapters_change_the_output(backend):
    requests = [GenerateRequest(messages=_chat(QUESTIONS[0]), adapter=a, decoding=Decoding(max_new_tokens=16)) for a in ADAPTERS]
    assert len(set(backend.generate(requests))) == 3
    dists = [r.probs for r in backend.option_probs(_option_requests()[:3])]
    assert dists[0] != dists[1] and dists[1] != dists[2]


def test_option_probs_match_direct_full_softmax(backend, adapter_dirs):
    """Recompute on an independently built peft model: softmax over the full vocabulary, summed per label over every
    token that spells it ("A" and " A"), plus the spellings after whitespace tokens by the chain rule."""
    from peft import PeftModel

    from modplural.backends.local import WHITESPACE_DEPTH, WHITESPACE_TOLERANCE
    from modplural.models import load_model

    request = _option_requests()[1]  # adapter "alpha"
    [result] = backend.option_probs([request])
    fresh = load_model("default", device="cpu", dtype="float32")
    tok = fresh.tokenizer
    model = PeftModel.from_pretrained(fresh.model, str(adapter_dirs["alpha"])).eval()
    text = tok.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False) + request.answer_prefix
    ids = tok(text, add_special_tokens=False)["input_ids"]
    texts = [tok.decode([i]) for i in range(len(tok))]
    special = set(tok.all_special_ids)
    whitespace = [i for i, t in enumerate(texts) if t and not t.strip() and i not in special]
    variants = []
    for label in LABELS:
        found = {i for i, t in enumerate(texts) if t.strip() == label} - special
        assert {tok.encode(label)[0], tok.encode(" " + label)[0]} <= found  # "A" and " A" are both counted
        variants.append(sorted(found))

    def mass(seq, depth, path):  # the engine's rule: follow whitespace paths more likely than WHITESPACE_TOLERANCE
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=torch.tensor([seq])).logits[0, -1].double(), dim=-1)
        direct = [path * float(probs[v].sum()) for v in variants]
        for w in whitespace if depth else []:
            if path * probs[w] > WHITESPACE_TOLERANCE:
                direct = [d + x for d, x in zip(direct, mass(seq + [w], depth - 1, path * float(probs[w])))]
        return direct

    direct = mass(ids, WHITESPACE_DEPTH, 1.0)
    assert result.mass == pytest.approx(sum(direct), abs=1e-5)
    for got, want in zip(result.probs, direct):
        assert got == pytest.approx(want / sum(direct), abs=1e-5)
    assert sum(result.probs) == pytest.approx(1.0, abs=1e-9)


def test_whitespace_paths_as_tree_columns_equal_row_copies(backend, monkeypatch):
    """The exact reading follows whitespace paths as extra columns of their prompt's cache row (a 4D mask shows each
    column only its own path); copying the row per path gives the same distributions, up to attention's summation
    order. The batch mixes adapters, prompts whose paths carry real mass and prompts with few paths."""
    from modplural.backends import whitespace_paths

    number = "Pick one number from 1 to 3 and write only the number.\nNumber:"
    requests = _option_requests() + [OptionRequest(labels=("1", "2", "3"), prompt=number, adapter=a) for a in ADAPTERS]
    widths = []
    extend = whitespace_paths.TreeColumns.extend

    def spy(self, parents, tokens):
        before = self.columns
        logits = extend(self, parents, tokens)
        widths.append(self.columns - before)  # this depth's columns per row
        return logits

    monkeypatch.setattr(whitespace_paths.TreeColumns, "extend", spy)
    assert backend._tree_paths  # sdpa attention on a preallocated cache
    tree = backend.option_probs(requests)
    assert widths and max(widths) > 1  # several paths of one prompt shared its row at one depth
    tree_calls = len(widths)
    monkeypatch.setattr(backend, "_tree_paths", False)
    copies = backend.option_probs(requests)
    assert len(widths) == tree_calls  # the copies did not go through TreeColumns
    for t, c in zip(tree, copies):
        assert max(abs(x - y) for x, y in zip(t.probs, c.probs)) < 1e-5
        assert abs(t.mass - c.mass) < 1e-5 and abs(t.unread - c.unread) < 1e-6
    assert max(r.mass for r in tree[-3:]) > 0.05


def test_distributions_sum_to_one_with_numeric_labels(backend):
    labels = tuple(str(i) for i in range(1, 9))
    [result] = backend.option_probs([OptionRequest(labels=labels, prompt="Pick a number from 1 to 8: ")])
    assert sum(result.probs) == pytest.approx(1.0)
    assert 0 < result.mass <= 1


def test_seeded_sampling_is_reproducible_and_batch_independent(backend):
    sampled = GenerateRequest(messages=_chat(QUESTIONS[1]), adapter="beta", decoding=Decoding(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7))
    other = GenerateRequest(messages=_chat(QUESTIONS[2]), adapter="alpha", decoding=Decoding(max_new_tokens=12))
    alone = backend.generate([sampled])[0]
    assert backend.generate([sampled])[0] == alone
    assert backend.generate([other, sampled])[1] == alone
    reseeded = [GenerateRequest(messages=sampled.messages, adapter="beta", decoding=Decoding(max_new_tokens=12, temperature=1.0, seed=s)) for s in range(4)]
    assert len(set(backend.generate(reseeded))) > 1


def test_generation_stops_at_max_new_tokens(backend):
    [text] = backend.generate([GenerateRequest(prompt="Once upon a time", decoding=Decoding(max_new_tokens=3))])
    assert 1 <= len(backend.tokenizer(text, add_special_tokens=False)["input_ids"]) <= 4


def test_adapter_identity_depends_on_weights(backend):
    assert backend.adapter_identity(None) == backend.loaded.identity
    assert backend.adapter_identity("alpha") != backend.adapter_identity("beta")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: OptionRequest(labels=("A",), prompt="x"), "at least two option labels"),
        (lambda: OptionRequest(labels=("A", "A"), prompt="x"), "distinct"),
        (lambda: GenerateRequest(prompt="x", decoding=Decoding(max_new_tokens=0)), "max_new_tokens"),
        (lambda: GenerateRequest(), "exactly one of messages or prompt"),
    ],
)
def test_bad_requests(make, message):
    with pytest.raises(ModPluralError, match=message):
        make()


def test_unknown_adapter_and_unspellable_label(backend):
    with pytest.raises(ModPluralError, match="unknown adapter 'gamma'"):
        backend.generate([GenerateRequest(prompt="x", adapter="gamma")])
    with pytest.raises(ModPluralError, match="not a single token"):
        backend.option_probs([OptionRequest(labels=("A", "Absolutely not, never"), prompt="x")])


def test_missing_or_incomplete_adapter(loaded, tmp_path):
    backend = LocalBackend(loaded=loaded)
    with pytest.raises(ModPluralError, match="adapter directory for 'x' not found"):
        backend.load_adapter("x", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModPluralError, match="has no adapter_config.json"):
        backend.load_adapter("x", tmp_path / "empty")


def test_adapter_for_another_base_model_is_refused(loaded, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    tiny = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=128))
    get_peft_model(tiny, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(tmp_path / "tiny"))
    backend = LocalBackend(loaded=loaded)
    with pytest.raises(ModPluralError, match="made for another base model"):
        backend.load_adapter("tiny", tmp_path / "tiny")
    assert backend.adapters == []
    assert backend._model is loaded.model and not hasattr(loaded.model, "peft_config")  # left untouched


def test_adapter_records_the_canonical_base_name(adapter_dirs):
    config = json.loads((adapter_dirs["alpha"] / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_prompt_too_long_is_refused(backend):
    with pytest.raises(ModPluralError, match="exceeds the model"):
        backend.generate([GenerateRequest(prompt="word " * 9000, decoding=Decoding(max_new_tokens=4))])
    persona = [{"role": "system", "content": "word " * 9000}, {"role": "user", "content": "Yes or no?"}]
    for call, request in [(backend.option_probs, OptionRequest(labels=("A", "B"), messages=persona)),
                          (backend.next_tokens, NextTokenRequest(messages=persona, k=2))]:  # reads too, before any forward pass
        with pytest.raises(ModPluralError, match=r"a prompt of \d+ tokens plus 0 new tokens exceeds the model's 8192 positions: shorten"):
            call([request])

