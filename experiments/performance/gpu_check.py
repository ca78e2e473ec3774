"""Batching agreement and the three modes on the device that `auto` picks, in float32 and bfloat16.

Builds a small random Llama (character tokenizer) and two random LoRA adapters on the fly, so it runs
anywhere without downloads:  python -m experiments.performance.gpu_check
Per dtype it prints: greedy texts identical batched vs one at a time, token agreement, the largest
option-probability difference, and a smoke run of the three collaboration modes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import yaml
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from modplural.assembly import StackSpec, assemble
from modplural.backends import Decoding, GenerateRequest, OptionRequest
from modplural.methods import ModularPluralism

QUESTIONS = ["Is it safe?", "Should vaccines be mandatory for every child in school?", "Hi", "What about sugar taxes in low income countries?"]
ADAPTERS = [None, "alpha", "beta"]


def build_tiny_model(root: Path) -> Path:
    """A 4-layer random Llama with a character-level tokenizer and a plain chat template, plus two adapters."""
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>"] + [chr(c) for c in range(32, 127)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    config = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=len(vocab), pad_token_id=0, eos_token_id=1, bos_token_id=1, max_position_embeddings=1024)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    for i, name in enumerate(["alpha", "beta"]):
        torch.manual_seed(10 + i)
        lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(LlamaForCausalLM.from_pretrained(root / "tiny"), lora).save_pretrained(root / name)
    return root / "tiny"


def write_registry(model_dir: Path) -> Path:
    """A registry of the two random adapters on the tiny model."""
    entries = [{"name": n, "description": f"{n} people", "axis": "test", "base_model": str(model_dir), "adapter": n, "corpus": {"source": "random", "licence": "none"}}
               for n in ("alpha", "beta")]
    path = model_dir.parent / "registry.yaml"
    path.write_text(yaml.safe_dump({"communities": entries}))
    return path


def check(model_dir: Path, dtype: str) -> None:
    spec = StackSpec(registry=write_registry(model_dir), device="auto", dtype=dtype, batch_size=8, cache=False,
                     decoding=Decoding(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=0), with_main=False)
    pool = assemble(spec).pool
    backend = pool.backend
    chat = [[{"role": "user", "content": q}] for q in QUESTIONS]
    requests = [GenerateRequest(messages=m, adapter=a, decoding=Decoding(max_new_tokens=24)) for m in chat for a in ADAPTERS]
    batched = backend.generate(requests)
    single = [backend.generate([r])[0] for r in requests]
    ids = lambda text: backend.tokenizer(text)["input_ids"]  # noqa: E731
    same_tokens = sum(sum(p == q for p, q in zip(ids(b), ids(s))) for b, s in zip(batched, single))
    all_tokens = sum(max(len(ids(b)), len(ids(s))) for b, s in zip(batched, single))
    options = [OptionRequest(labels=("A", "B", "C"), messages=m, adapter=a, answer_prefix="Answer: ") for m in chat for a in ADAPTERS]
    diff = max(abs(x - y) for b, s in zip(backend.option_probs(options), [backend.option_probs([o])[0] for o in options]) for x, y in zip(b.probs, s.probs))
    print(f"{dtype} on {backend.loaded.device}: identical texts {sum(b == s for b, s in zip(batched, single))}/{len(requests)}, "
          f"token agreement {same_tokens / max(all_tokens, 1):.3f}, max option-prob diff {diff:.2e}")
    method = ModularPluralism(backend, pool, {"main_tokens": 8})
    dist, steer = method.distributional("Yes or no?", ["Yes", "No"]), method.steerable("Yes or no?", "the value of care")
    print(f"  modes: distributional sums to {sum(dist.distribution):.6f}, steerable chose {steer.chosen_community}, overton ran: {method.overton('Hello?').response is not None}")


if __name__ == "__main__":
    print("torch", torch.__version__, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    tiny = build_tiny_model(Path(tempfile.mkdtemp()))
    for name in ("float32", "bfloat16"):
        check(tiny, name)
