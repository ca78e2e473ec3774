"""Local transformers + peft backend: one base model in memory, LoRA adapters by name, mixed-adapter batches."""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Mapping, Sequence

from modplural.backends.base import Decoding, GenerateRequest, OptionRequest, OptionResult
from modplural.backends.label_tokens import LabelTokens
from modplural.errors import ModPluralError
from modplural.models import DEFAULT_MODEL, LoadedModel, load_model

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _fallback_chat(messages: Sequence[dict]) -> str:
    """A plain prompt for tokenizers without a chat template."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class LocalBackend:
    """Runs ``generate`` and ``option_probs`` on a local transformers model with any number of LoRA adapters.

    Requests are sorted by prompt length, cut into batches of ``batch_size`` rows, left-padded and run
    together even when their rows use different adapters (peft ``adapter_names``); results come back in
    request order. Sampling uses one ``torch.Generator`` per request, so a seeded request yields the same
    text whichever batch it lands in.

    The backend owns its model: loading an adapter injects LoRA layers into it, so pass ``loaded`` only
    for a model that nothing else uses.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        adapters: Mapping[str, str | Path] | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        loaded: LoadedModel | None = None,
    ) -> None:
        if batch_size < 1:
            raise ModPluralError(f"batch_size must be at least 1, got {batch_size}")
        self.loaded = loaded or load_model(model, device=device, dtype=dtype)
        self.tokenizer = self.loaded.tokenizer
        self.batch_size = batch_size
        self._model = self.loaded.model
        self._adapters: dict[str, str] = {}
        self._label_tokens: LabelTokens | None = None
        self._eos_ids = self._collect_eos_ids()
        forward_params = inspect.signature(type(self.loaded.model).forward).parameters
        self._cache_keyword = "cache" if "cache" in forward_params else "past_key_values"
        for name, path in (adapters or {}).items():
            self.load_adapter(name, path)

    # ----------------------------------------------------------------- adapters
    @property
    def adapters(self) -> list[str]:
        """Names of the loaded adapters."""
        return list(self._adapters)

    def adapter_identity(self, adapter: str | None) -> str:
        """A stable identity of the weights that serve ``adapter`` (for caches and manifests)."""
        if adapter is None:
            return self.loaded.identity
        self._check_adapter(adapter)
        return f"{self.loaded.identity}+{adapter}:{self._adapters[adapter]}"

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a peft LoRA adapter from ``path`` under ``name``, after checking it fits the base model."""
        from peft import PeftModel

        if not name or name == BASE_ADAPTER:
            raise ModPluralError(f"invalid adapter name {name!r}")
        if name in self._adapters:
            raise ModPluralError(f"adapter {name!r} is already loaded")
        path = Path(path).expanduser()
        if not path.is_dir():
            raise ModPluralError(f"adapter directory for {name!r} not found: {path}")
        for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            if not (path / required).is_file():
                raise ModPluralError(f"adapter {name!r} at {path} has no {required}")
        self._check_fits_base(name, path)
        try:
            if isinstance(self._model, PeftModel):
                self._model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            else:
                self._model = PeftModel.from_pretrained(self._model, str(path), adapter_name=name, is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ModPluralError(f"adapter {name!r} at {path} could not be loaded: {str(exc).splitlines()[0]}") from exc
        self._model.eval()
        self._adapters[name] = _sha256(path / ADAPTER_WEIGHTS)

    def _check_fits_base(self, name: str, path: Path) -> None:
        """Refuse an adapter whose LoRA shapes or recorded base model do not match the loaded model."""
        from safetensors import safe_open

        config = json.loads((path / ADAPTER_CONFIG).read_text())
        modules = dict(self.loaded.model.named_modules())
        with safe_open(str(path / ADAPTER_WEIGHTS), framework="pt") as f:
            for key in f.keys():
                if ".lora_A." not in key:
                    continue
                module_name = key.split(".lora_A.")[0].removeprefix("base_model.model.")
                module = modules.get(module_name)
                r, in_features = f.get_slice(key).get_shape()
                if module is None or getattr(module, "in_features", in_features) != in_features:
                    raise ModPluralError(
                        f"adapter {name!r} at {path} was made for another base model "
                        f"({config.get('base_model_name_or_path') or 'unknown'}): its layer {module_name} does not fit {self.loaded.base_name}"
                    )
        recorded = config.get("base_model_name_or_path")
        if recorded and Path(recorded).name.lower() != Path(self.loaded.base_name).name.lower():
            print(
                f"modplural: warning: adapter {name!r} records base model {recorded}, loaded base is {self.loaded.base_name}",
                file=sys.stderr,
            )

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self._adapters:
            loaded = ", ".join(self._adapters) or "none"
            raise ModPluralError(f"unknown adapter {adapter!r} (loaded adapters: {loaded})")

    def _adapter_kwargs(self, adapters: Sequence[str | None]) -> dict:
        if not self._adapters:
            return {}
        return {"adapter_names": [a or BASE_ADAPTER for a in adapters]}

    # ----------------------------------------------------------------- encoding
    def _encode(self, messages: Sequence[dict] | None, prompt: str | None, suffix: str = "") -> list[int]:
        if messages is not None:
            if getattr(self.tokenizer, "chat_template", None):
                text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
            else:
                text = _fallback_chat(messages)
            ids = self.tokenizer(text + suffix, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(prompt + suffix)["input_ids"]
        if not ids:
            raise ModPluralError("a request's prompt is empty")
        return ids

    def _collect_eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.loaded.model, "generation_config", None), "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        return {i for i in ids if i is not None}

    def _new_cache(self) -> dict:
        """A fresh KV cache, passed under the keyword this transformers version expects (updated in place)."""
        from transformers import DynamicCache

        return {self._cache_keyword: DynamicCache(config=self.loaded.model.config)}

    def _max_positions(self) -> int:
        return int(getattr(self.loaded.model.config, "max_position_embeddings", 1 << 30))

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Request indices sorted by length (longest first), cut into batches."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _left_pad(self, seqs: Sequence[Sequence[int]]):
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        device = self.loaded.device
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(device), mask.to(device), positions.to(device)

    # ----------------------------------------------------------------- generate
    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Generate one text per request, in request order."""
        for r in requests:
            self._check_adapter(r.adapter)
        encoded = [self._encode(r.messages, r.prompt) for r in requests]
        for i, (ids, r) in enumerate(zip(encoded, requests)):
            if len(ids) + r.decoding.max_new_tokens > self._max_positions():
                raise ModPluralError(
                    f"request {i}: prompt of {len(ids)} tokens plus {r.decoding.max_new_tokens} new tokens exceeds the model's {self._max_positions()} positions"
                )
        results: list[str] = [""] * len(requests)
        for batch in self._batches([len(e) for e in encoded]):
            texts = self._generate_batch([encoded[i] for i in batch], [requests[i] for i in batch])
            for i, text in zip(batch, texts):
                results[i] = text
        return results

    def _generate_batch(self, seqs: list[list[int]], requests: list[GenerateRequest]) -> list[str]:
        import torch

        ids, mask, positions = self._left_pad(seqs)
        kwargs = self._adapter_kwargs([r.adapter for r in requests])
        generators = [_row_generator(r.decoding) for r in requests]
        limits = [r.decoding.max_new_tokens for r in requests]
        outputs: list[list[int]] = [[] for _ in requests]
        done = [False] * len(requests)
        kwargs.update(self._new_cache())
        with torch.inference_mode():
            out = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **kwargs)
            for _ in range(max(limits)):
                chosen = _choose_tokens(out.logits[:, -1, :], requests, generators)
                for row, token in enumerate(chosen):
                    if done[row]:
                        continue
                    if token in self._eos_ids:
                        done[row] = True
                        continue
                    outputs[row].append(token)
                    done[row] = len(outputs[row]) >= limits[row]
                if all(done):
                    break
                feed = torch.tensor([[t] for t in chosen], dtype=torch.long, device=ids.device)
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                positions = positions[:, -1:] + 1
                out = self._model(input_ids=feed, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs)
        return [self.tokenizer.decode(o, skip_special_tokens=True).strip() for o in outputs]

    # ----------------------------------------------------------------- option_probs
    def option_probs(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """Distributions over each request's labels from the full next-token softmax."""
        import torch

        for r in requests:
            self._check_adapter(r.adapter)
        if self._label_tokens is None and requests:
            self._label_tokens = LabelTokens(self.tokenizer)
        label_ids = [self._label_tokens.ids(r.labels) for r in requests]
        encoded = [self._encode(r.messages, r.prompt, r.answer_prefix) for r in requests]
        results: list[OptionResult | None] = [None] * len(requests)
        for batch in self._batches([len(e) for e in encoded]):
            ids, mask, positions = self._left_pad([encoded[i] for i in batch])
            kwargs = self._adapter_kwargs([requests[i].adapter for i in batch])
            with torch.inference_mode():
                logits = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, **kwargs).logits
            probs = torch.softmax(logits[:, -1, :].double(), dim=-1).cpu()
            for row, i in enumerate(batch):
                results[i] = _option_result(requests[i].labels, label_ids[i], probs[row])
        return results  # type: ignore[return-value]


    # ----------------------------------------------------------------- scoring text
    def token_nll(self, blocks: Sequence[Sequence[int]], adapters: Sequence[str | None]) -> list[tuple[float, int]]:
        """Summed next-token negative log-likelihood and token count of each token block under its adapter."""
        import torch

        if len(blocks) != len(adapters):
            raise ModPluralError("token_nll needs one adapter per block")
        for a in adapters:
            self._check_adapter(a)
        results: list[tuple[float, int]] = [(0.0, 0)] * len(blocks)
        for batch in self._batches([len(b) for b in blocks]):
            ids, mask, positions = self._left_pad([blocks[i] for i in batch])
            kwargs = self._adapter_kwargs([adapters[i] for i in batch])
            with torch.inference_mode():
                logits = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            valid = mask[:, 1:].bool() & mask[:, :-1].bool()
            for row, i in enumerate(batch):
                results[i] = (float(-(logp[row][valid[row]]).sum()), int(valid[row].sum()))
        return results


def _option_result(labels: tuple[str, ...], label_ids: list[list[int]], probs) -> OptionResult:
    values = [float(probs[ids].sum()) for ids in label_ids]
    mass = sum(values)
    if mass <= 0:
        raise ModPluralError(f"the model put zero probability on every option label {list(labels)}")
    return OptionResult(labels, tuple(v / mass for v in values), mass)


def _row_generator(decoding: Decoding):
    import torch

    if decoding.greedy:
        return None
    generator = torch.Generator()
    if decoding.seed is None:
        generator.seed()
    else:
        generator.manual_seed(decoding.seed)
    return generator


def _choose_tokens(logits, requests: Sequence[GenerateRequest], generators) -> list[int]:
    """Greedy argmax per row, or temperature/top-p sampling with the row's own generator (on CPU)."""
    import torch

    chosen = logits.argmax(dim=-1).tolist()
    for row, (request, generator) in enumerate(zip(requests, generators)):
        if generator is None:
            continue
        d = request.decoding
        probs = torch.softmax(logits[row].float().cpu() / d.temperature, dim=-1)
        if d.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(0) - sorted_probs < d.top_p
            probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
        chosen[row] = int(torch.multinomial(probs, 1, generator=generator))
    return chosen
