"""The batched engine's parts (LoRA bank, KV cache, batch sizes) and the sequential reference engine, on the real model.

(On the real model: the parts that need none are in tests/unit/test_engines.py.)"""

from __future__ import annotations

import pytest
import torch

from experiments.performance.benchmark_items import ITEMS
from modplural.assembly import check_engine
from modplural.backends import Decoding, GenerateRequest, OptionRequest
from modplural.backends.batch_size import auto_rows, bytes_per_row, parse_batch_size
from modplural.backends.local import LocalBackend
from modplural.backends.sequential import SequentialBackend
from modplural.errors import ModPluralError
from modplural.prompts import modplural as prompts
from modplural.types import Query
from tests.helpers import assert_one_line_error, run_cli

QUESTIONS = [prompts.community(Query(question), "overton") for question, _ in ITEMS[:2]]  # the benchmark's prompts
ADAPTERS = [None, "alpha", "beta"]


@pytest.fixture(scope="module")
def reference(adapter_dirs):
    return SequentialBackend("default", adapters=adapter_dirs, device="cpu", dtype="float32")


def _chat(text: str) -> tuple[dict, ...]:
    return ({"role": "user", "content": text},)


def test_reference_engine_greedy_equals_batched(backend, reference):
    """The original's pattern (unbatched model.generate, one adapter switched on at a time) gives the same greedy text."""
    requests = [GenerateRequest(messages=_chat(q), adapter=a, decoding=Decoding(max_new_tokens=12)) for q in QUESTIONS for a in ADAPTERS]
    batched = backend.generate(requests)
    assert reference.generate(requests) == batched
    assert len(set(batched)) == len(batched)  # the adapters really differ


def test_reference_option_probs_read_only_the_top_ten(backend, reference):
    request = OptionRequest(labels=("A", "B", "C"), messages=_chat("Pick one.\nA. Yes\nB. No\nC. Maybe\nAnswer with one letter."), adapter="alpha", answer_prefix="Answer: ")
    [full] = backend.option_probs([request])
    [top10] = reference.option_probs([request])
    assert top10.labels == full.labels and sum(top10.probs) == pytest.approx(1.0)
    assert 0 <= top10.mass <= full.mass + 1e-6  # top-10 tokens cover at most the full vocabulary's mass
    # a label no model would put in its top 10 gets nothing: the original's blind spot, kept on purpose
    [rare] = reference.option_probs([OptionRequest(labels=("A", "Zanzibar"), messages=request.messages, adapter="alpha", answer_prefix="Answer: ")])
    assert rare.probs[1] == 0.0 or rare.mass == 0.0


def test_rows_that_finish_early_leave_the_batch_without_changing_others(backend):
    """Different lengths in one batch: each row still equals its own unbatched run."""
    requests = [GenerateRequest(messages=_chat(q), adapter=a, decoding=Decoding(max_new_tokens=n)) for q in QUESTIONS for a, n in zip(ADAPTERS, (3, 14, 7))]
    batched = backend.generate(requests)
    assert batched == [backend.generate([r])[0] for r in requests]
    short = backend.tokenizer(batched[0], add_special_tokens=False)["input_ids"]
    assert len(short) <= 4


def test_finished_rows_wait_for_a_quarter_of_the_batch_without_changing_others(backend):
    """One row of eight finishes early: it stays in the batch (fed padding, logits unread) until a quarter has finished,
    so every step carries all eight rows, and every row's text still equals its own unbatched run."""
    from modplural.backends import local

    requests = [GenerateRequest(messages=_chat(q), adapter=a, decoding=Decoding(max_new_tokens=2 if i == 0 else 8))
                for i, (q, a) in enumerate((q, a) for q in QUESTIONS + QUESTIONS[:1] for a in ADAPTERS)][:8]
    assert 1 / 8 < local.DROP_FRACTION
    steps, rows = backend.stats.decode_steps, backend.stats.decode_rows
    batched = backend.generate(requests)
    steps, rows = backend.stats.decode_steps - steps, backend.stats.decode_rows - rows
    assert rows == 8 * steps  # the finished row was carried, not dropped
    assert batched == [backend.generate([r])[0] for r in requests]
    assert len(backend.tokenizer(batched[0], add_special_tokens=False)["input_ids"]) <= 2


def test_lora_bank_matches_peft_for_rslora_ranks_and_alpha_patterns(loaded, adapter_dirs, tmp_path):
    """Mixed rows (base, a plain adapter, an rsLoRA adapter with per-layer rank/alpha) against peft, adapter by adapter."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from modplural.models import load_model

    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj", "o_proj"], rank_pattern={"o_proj": 2}, alpha_pattern={"v_proj": 32}, init_lora_weights=False)
    get_peft_model(load_model("default", device="cpu", dtype="float32").model, config).save_pretrained(str(tmp_path / "rs"))
    adapters = {"alpha": adapter_dirs["alpha"], "rs": tmp_path / "rs"}
    backend = LocalBackend(loaded=loaded, adapters=adapters)
    ids = backend.tokenizer("Vaccines are", return_tensors="pt")["input_ids"]
    batch = ids.repeat(3, 1)
    with torch.inference_mode(), backend._rows([None, "alpha", "rs"]):
        ours = backend._model(input_ids=batch).logits[:, -1]
    for row, name in enumerate([None, "alpha", "rs"]):
        fresh = load_model("default", device="cpu", dtype="float32").model
        model = PeftModel.from_pretrained(fresh, str(adapters[name])) if name else fresh
        with torch.inference_mode():
            want = model(input_ids=ids).logits[0, -1]
        assert (ours[row] - want).abs().max() < 1e-4, name
    assert (ours[0] - ours[2]).abs().max() > 1e-2  # the adapter did something


def test_lora_bank_refuses_unsupported_adapters(loaded, tmp_path):
    from peft import LoraConfig, get_peft_model

    from modplural.models import load_model

    get_peft_model(load_model("default", device="cpu", dtype="float32").model, LoraConfig(r=2, target_modules=["q_proj"], use_dora=True)).save_pretrained(str(tmp_path / "dora"))
    backend = LocalBackend(loaded=loaded)
    with pytest.raises(ModPluralError, match="use_dora.*--engine sequential"):
        backend.load_adapter("dora", tmp_path / "dora")
    assert backend.adapters == []


def test_batch_sizes(loaded):
    assert parse_batch_size("auto") == "auto" and parse_batch_size("8") == 8
    for bad in ("0", "-3", "many", "2.5"):
        with pytest.raises(ModPluralError, match="positive integer or 'auto'"):
            parse_batch_size(bad)
    config = loaded.model.config
    assert bytes_per_row(config, 200, 4) > bytes_per_row(config, 100, 4)
    assert bytes_per_row(config, 100, 4, logit_positions=100) - bytes_per_row(config, 100, 4) == 99 * config.vocab_size * 8
    assert 1 <= auto_rows(config, 300, 4, "cpu") <= 128
    assert auto_rows(config, 10**7, 4, "cpu") == 1
    assert auto_rows(config, 1000, 4, "cpu", scoring=True) == 4  # a scoring forward stays under 4096 tokens
    with pytest.raises(ModPluralError, match="unknown engine 'turbo'"):
        check_engine("turbo")


def test_decoding_steps_are_counted(backend):
    """``decode_steps``/``decode_rows``: one pass per new token after the first (which the prompt pass gives), over the rows still running."""
    requests = [GenerateRequest(messages=_chat(q), adapter=a, decoding=Decoding(max_new_tokens=n)) for q in QUESTIONS for a, n in zip(ADAPTERS, (3, 5, 6))]
    before = (backend.stats.decode_steps, backend.stats.decode_rows, backend.stats.generated_tokens)
    texts = backend.generate(requests)
    steps, rows, generated = (after - b for after, b in zip((backend.stats.decode_steps, backend.stats.decode_rows, backend.stats.generated_tokens), before))
    assert all(texts)
    assert steps <= 5 and rows <= steps * len(requests)
    assert rows >= generated - len(requests)  # a row's first token needs no decoding pass
    assert rows < steps * len(requests)  # the 3-token rows left the batch before the end


def test_scoring_batches_hold_rows_of_similar_length(loaded, monkeypatch):
    """Auto scoring batches are cut by padded tokens, longest first, so short rows are not padded to the longest."""
    import modplural.backends.batch_size as batch_size

    monkeypatch.setattr(batch_size, "SCORING_TOKENS", {"cpu": 1000, "cuda": 1000})
    engine = LocalBackend(loaded=loaded)
    lengths = [264, 70, 250, 90, 120, 71, 200, 99, 130, 80]
    batches = engine._batches(lengths, 3, scoring=True)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) * (lengths[batch[0]] + 3) <= 1000 or len(batch) == 1
    assert [len(b) for b in batches] == [3, 7]  # 264,250,200 (3 x 267 tokens) | 130 down to 70 (7 x 133)
    assert len(engine._batches(lengths, 3)) == 1  # generation keeps its rows together
    fixed = LocalBackend(loaded=loaded, batch_size=4)
    assert [len(b) for b in fixed._batches(lengths, 3, scoring=True)] == [4, 4, 2]  # an explicit batch size is kept


def test_cli_sequential_engine_and_bad_batch_size():
    args = ["ask", "Is a sugar tax fair?", "--communities", "patients,clinicians", "--message-tokens", "4", "--max-new-tokens", "4", "--no-cache", "--device", "cpu"]
    result = run_cli(*args, "--engine", "sequential", "--json")
    assert result.returncode == 0, result.stderr
    assert "engine=sequential" in result.stdout and '"patients"' in result.stdout
    assert_one_line_error(run_cli(*args, "--batch-size", "lots"), "batch_size must be a positive integer or 'auto'")


def test_prompts_read_in_column_chunks_give_the_same_text(backend, monkeypatch):
    """Long batches read their prompts in chunks of columns; the text must not change."""
    import modplural.backends.local as local

    requests = [GenerateRequest(messages=_chat(q), adapter=a, decoding=Decoding(max_new_tokens=10)) for q in QUESTIONS for a in ADAPTERS]
    whole = backend.generate(requests)
    monkeypatch.setattr(local, "forward_tokens", lambda device: 6 * 7)  # 6 rows -> 7 columns per forward pass
    assert backend.generate(requests) == whole


def test_token_likelihoods_agree_between_engines(backend, reference):
    """The reference scores each block alone (no padding, peft adapter switched on); the batched engine pads and mixes."""
    from modplural.backends.base import TokenScorer

    texts = ["Vaccines save lives.", "Sugar taxes change what families in poor countries buy every week.", "Hi there"]
    blocks = backend.tokenizer(texts, add_special_tokens=False)["input_ids"]
    adapters = ["alpha", None, "beta"]
    assert isinstance(backend, TokenScorer) and isinstance(reference, TokenScorer)
    batched, sequential = backend.token_nll(blocks, adapters), reference.token_nll(blocks, adapters)
    assert [n for _, n in sequential] == [n for _, n in batched] == [len(b) - 1 for b in blocks]
    for (ours, _), (theirs, _) in zip(batched, sequential):
        assert ours == pytest.approx(theirs, rel=1e-4)
    with pytest.raises(ModPluralError, match="one adapter per block"):
        reference.token_nll(blocks, adapters[:2])
    with pytest.raises(ModPluralError, match="unknown adapter 'gamma'"):
        reference.token_nll(blocks[:1], ["gamma"])


def test_auto_chunks_fill_one_batch_of_community_messages(loaded):
    """``chunk_size: auto``: items per call = the engine's batch rows // communities (one message each); 8 elsewhere."""
    from modplural.communities import Community
    from modplural.pool import CommunityPool
    from modplural.runs.generation import FALLBACK_CHUNK, auto_chunk

    communities = [Community(name=n, description=n, axis="test", persona=f"You speak for {n}.") for n in ("a", "b", "c")]
    assert auto_chunk(CommunityPool(LocalBackend(loaded=loaded, batch_size=20), communities)) == 20 // len(communities)
    assert LocalBackend(loaded=loaded).batch_rows() == 128  # the CPU cap of the auto batch size
    assert auto_chunk(CommunityPool(LocalBackend(loaded=loaded, batch_size=1), communities)) == 1
    assert auto_chunk(None) == FALLBACK_CHUNK
    assert auto_chunk(CommunityPool(SequentialBackend(loaded=loaded), communities)) == FALLBACK_CHUNK

