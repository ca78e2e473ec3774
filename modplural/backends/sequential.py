"""The reference engine: Modular Pluralism's original execution pattern, on our model and adapters.

It exists to be measured against (``--engine sequential``, ``experiments/performance/benchmark.py``):

* one adapter active at a time and one prompt at a time, unbatched ``model.generate``;
* an answer distribution costs a sampled 20-token generation (whose text the original keeps and we drop)
  followed by a separate full forward pass, from which only the top-10 next tokens are read.

Its outputs have the same types as the batched engine's. Its option distributions differ by design: a
label outside the top 10 gets no probability, and when no label is in the top 10 the result is uniform
with ``mass == 0`` (the original substitutes uniform "dummy" probabilities in that case).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Mapping, Sequence

from modplural.backends.adapter_files import AdapterFiles
from modplural.backends.base import Decoding, GenerateRequest, NextTokenRequest, OptionRequest, OptionResult, TopTokens
from modplural.backends.batch_size import parse_batch_size
from modplural.backends.label_tokens import from_top_tokens
from modplural.backends.loaded import LoadedModelBackend, check_finite
from modplural.backends.repetition import RepetitionControl
from modplural.errors import ModPluralError
from modplural.models import DEFAULT_MODEL, LoadedModel

ANSWER_SAMPLE_TOKENS = 20  # the original's max_new_tokens when it asks for probabilities
ANSWER_SAMPLE_TEMPERATURE = 0.1  # the original's default temperature for that call
TOP_K_READ = 10  # the original reads probabilities.topk(10)


class SequentialBackend(LoadedModelBackend):
    """The reference engine: peft adapters switched on one at a time, one prompt at a time, HF ``generate``."""

    engine = "sequential"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        adapters: Mapping[str, str | Path] | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | str = "auto",
        loaded: LoadedModel | None = None,
        weight_format: str = "float",
    ) -> None:
        """The batched engine's arguments; ``batch_size`` is checked the same way but unused (no batches here)."""
        parse_batch_size(batch_size)
        super().__init__(model, adapters, device, dtype, loaded, weight_format)

    def _use_adapter(self, adapter: str | None):
        """Activate one adapter (or none) for the next calls, as the original loads one community model at a time."""
        if not self._adapters:
            return contextlib.nullcontext()
        if adapter is None:
            return self._model.disable_adapter()
        self._model.set_adapter(adapter)
        return contextlib.nullcontext()

    def adapter_identity(self, adapter: str | None) -> str:
        """The weights' identity, marked with this engine: its sampled texts differ from the batched engine's."""
        return f"{super().adapter_identity(adapter)}|engine=sequential"

    def _attach_adapter(self, adapter: AdapterFiles) -> None:
        """Inject the adapter with peft, the way the original fine-tuned community models are used one by one."""
        from peft import PeftModel

        if isinstance(self._model, PeftModel):
            self._model.load_adapter(str(adapter.path), adapter_name=adapter.name, is_trainable=False)
        else:
            self._model = PeftModel.from_pretrained(self._model, str(adapter.path), adapter_name=adapter.name, is_trainable=False)
        self._model.eval()

    def token_nll(self, blocks: Sequence[Sequence[int]], adapters: Sequence[str | None]) -> list[tuple[float, int]]:
        """Summed next-token negative log-likelihood and token count of each block: one full forward pass per block,
        under its own adapter."""
        import torch

        if len(blocks) != len(adapters):
            raise ModPluralError("token_nll needs one adapter per block")
        for a in adapters:
            self._check_adapter(a)
        results = []
        for block, adapter in zip(blocks, adapters):
            ids = torch.tensor([block], dtype=torch.long, device=self.loaded.device)
            with torch.inference_mode(), self._use_adapter(adapter):
                logits = self._model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
            check_finite(logits, [adapter])
            logp = torch.log_softmax(logits[0, :-1], dim=-1).gather(-1, ids[0, 1:, None])[:, 0]
            results.append((float(-logp.sum()), len(block) - 1))
        return results

    def _hf_generate(self, ids: list[int], adapter: str | None, max_new_tokens: int, temperature: float, top_p: float, seed: int | None, top_k: int = 0,
                     repetition: Decoding | None = None) -> list[int]:
        import torch

        inputs = torch.tensor([ids], dtype=torch.long, device=self.loaded.device)
        sample = temperature > 0
        if sample and seed is not None:
            torch.manual_seed(seed)
        options = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or None) if sample else dict(do_sample=False)
        with torch.inference_mode():
            out = self._model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                eos_token_id=sorted(self._eos_ids),
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=_processors(adapter, len(ids), repetition),
                **options,
            )
        new = out[0, len(ids) :].tolist()
        self.stats.prompt_tokens += len(ids)
        self.stats.generated_tokens += len(self._until_eos(new))
        return new

    def _until_eos(self, tokens: list[int]) -> list[int]:
        for i, t in enumerate(tokens):
            if t in self._eos_ids:
                return tokens[:i]
        return tokens

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(self._until_eos(tokens), skip_special_tokens=True).strip()

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """One request at a time, in order, each with its own adapter switched on."""
        encoded = self._encode_checked(requests)
        results = []
        for ids, r in zip(encoded, requests):
            d = r.decoding
            with self._use_adapter(r.adapter):
                tokens = self._hf_generate(ids, r.adapter, d.max_new_tokens, d.temperature, d.top_p, d.seed, d.top_k, d)
            results.append(self._decode(tokens))
        return results

    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """A sampled 20-token answer, then a full forward pass whose top-10 next tokens give the distribution."""
        for r in requests:
            self._check_adapter(r.adapter)
        results = []
        for r in requests:
            ids = self._encode(r.messages, r.prompt, r.answer_prefix, new_tokens=ANSWER_SAMPLE_TOKENS)
            with self._use_adapter(r.adapter):
                self._hf_generate(ids, r.adapter, ANSWER_SAMPLE_TOKENS, ANSWER_SAMPLE_TEMPERATURE, 1.0, seed=0)
                top = self._top_tokens(ids, r.adapter, TOP_K_READ)
            token_probs: dict[str, float] = {}
            for text, prob in top:
                token_probs[text] = token_probs.get(text, 0.0) + prob
            results.append(from_top_tokens(r.labels, token_probs))
        return results

    def next_tokens(self, requests: Sequence[NextTokenRequest]) -> list[TopTokens]:
        """One full forward pass per request; its ``k`` likeliest next tokens."""
        results = []
        for r in requests:
            self._check_adapter(r.adapter)
            with self._use_adapter(r.adapter):
                results.append(self._top_tokens(self._encode(r.messages, r.prompt, r.answer_prefix), r.adapter, r.k))
        return results

    def _top_tokens(self, ids: list[int], adapter: str | None, k: int) -> TopTokens:
        import torch

        with torch.inference_mode():
            inputs = torch.tensor([ids], dtype=torch.long, device=self.loaded.device)
            logits = self._model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).logits
        self.stats.prompt_tokens += len(ids)
        check_finite(logits[:, -1], [adapter])
        top = torch.softmax(logits[0, -1].float(), dim=-1).topk(k)
        return [(self.tokenizer.decode([t]), p) for t, p in zip(top.indices.tolist(), top.values.tolist())]


def _processors(adapter: str | None, prompt_length: int, repetition: Decoding | None):
    """Logits processors (run before temperature, top-k and top-p, as in the batched engine): refuse NaN or infinite
    logits from the model (``check_finite``), then apply the decoding's repetition control to the generated tokens."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class FiniteLogits(LogitsProcessor):
        def __call__(self, input_ids, scores):
            check_finite(scores, [adapter] * len(scores))
            return scores

    class Repetition(LogitsProcessor):
        def __call__(self, input_ids, scores):
            control = RepetitionControl(repetition)
            for token in input_ids[0, prompt_length:].tolist():
                control.add(token)
            control.apply(scores[0])
            return scores

    wanted = repetition is not None and RepetitionControl.wanted(repetition)
    return LogitsProcessorList([FiniteLogits(), Repetition()] if wanted else [FiniteLogits()])
