"""What both local engines share: one transformers model in memory, LoRA adapters by name, prompt encoding."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from modplural.backends.adapter_files import ADAPTER_WEIGHTS, AdapterFiles, read_adapter
from modplural.backends.base import GenerateRequest
from modplural.errors import ModPluralError
from modplural.models import DEFAULT_MODEL, LoadedModel, load_model
from modplural.provenance import file_sha256


@dataclass
class EngineStats:
    """What an engine has done: prompt tokens read (without padding), tokens generated, and where the time went."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_seconds: float = 0.0  # generation: reading the prompts
    decode_seconds: float = 0.0  # generation: one token per step
    decode_steps: int = 0  # batched generation: decoding forward passes (one new token for every row still in the batch)
    decode_rows: int = 0  # batched generation: rows summed over those passes (rows per step = decode_rows / decode_steps)
    scoring_seconds: float = 0.0  # option distributions: one forward pass
    reused_prompt_tokens: int = 0  # of prompt_tokens: not run, their keys and values copied from a shared prefix (batched engine)
    prefix_cache_peak_bytes: int = 0  # the most memory the shared prefixes' keys and values took at once


class LoadedModelBackend(ABC):
    """The base of the local engines: a loaded model and tokenizer, the adapter registry and its checks, prompt encoding.

    It runs nothing: each engine attaches adapters its own way (``_attach_adapter``) and serves requests its own way.
    The backend owns its model: attaching an adapter changes it, so pass ``loaded`` only for a model that nothing
    else uses.
    """

    engine: str

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        adapters: Mapping[str, str | Path] | None = None,
        device: str = "auto",
        dtype: str = "auto",
        loaded: LoadedModel | None = None,
        weight_format: str = "float",
    ) -> None:
        self.loaded = loaded or load_model(model, device=device, dtype=dtype, weight_format=weight_format)
        self.tokenizer = self.loaded.tokenizer
        self.stats = EngineStats()
        self._model = self.loaded.model
        self._adapters: dict[str, str] = {}
        self._eos_ids = self._collect_eos_ids()
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
        """Load a peft LoRA adapter from ``path`` under ``name``, after checking its files and that it fits the base model."""
        if not name:
            raise ModPluralError(f"invalid adapter name {name!r}")
        if name in self._adapters:
            raise ModPluralError(f"adapter {name!r} is already loaded")
        adapter = read_adapter(name, Path(path).expanduser())
        self._check_fits_base(adapter)
        try:
            self._attach_adapter(adapter)
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise ModPluralError(f"adapter {name!r} at {adapter.path} could not be loaded: {str(exc).splitlines()[0]}") from exc
        self._adapters[name] = file_sha256(adapter.path / ADAPTER_WEIGHTS)[:16]

    @abstractmethod
    def _attach_adapter(self, adapter: AdapterFiles) -> None:
        """Make the checked adapter servable by this engine."""

    def _check_fits_base(self, adapter: AdapterFiles) -> None:
        """Refuse an adapter whose LoRA shapes or recorded base model do not match the loaded model."""
        modules = dict(self.loaded.model.named_modules())
        recorded = adapter.config.get("base_model_name_or_path")
        for key, tensor in adapter.weights.items():
            if ".lora_A." not in key:
                continue
            module_name = key.split(".lora_A.")[0].removeprefix("base_model.model.")
            module = modules.get(module_name)
            in_features = tensor.shape[-1]
            if module is None or getattr(module, "in_features", in_features) != in_features:
                raise ModPluralError(
                    f"adapter {adapter.name!r} at {adapter.path} was made for another base model "
                    f"({recorded or 'unknown'}): its layer {module_name} does not fit {self.loaded.base_name}"
                )
        if recorded and Path(recorded).name.lower() != Path(self.loaded.base_name).name.lower():
            print(
                f"modplural: warning: adapter {adapter.name!r} records base model {recorded}, loaded base is {self.loaded.base_name}",
                file=sys.stderr,
            )

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self._adapters:
            loaded = ", ".join(self._adapters) or "none"
            raise ModPluralError(f"unknown adapter {adapter!r} (loaded adapters: {loaded})")

    # ----------------------------------------------------------------- encoding
    def _encode(self, messages: Sequence[dict] | None, prompt: str | None, suffix: str = "", new_tokens: int = 0) -> list[int]:
        """A request's token ids; a prompt that with ``new_tokens`` more does not fit the model is a one-line error
        (a request that reads options or next tokens adds none; a persona or passage may be what is too long)."""
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
        if len(ids) + new_tokens > self._max_positions():
            raise ModPluralError(f"a prompt of {len(ids)} tokens plus {new_tokens} new tokens exceeds the model's {self._max_positions()} positions: "
                                 "shorten the question, the persona, the passages or the token limits")
        return ids

    def _encode_checked(self, requests: Sequence[GenerateRequest]) -> list[list[int]]:
        """Token ids of each request's prompt, after checking its adapter and that prompt + new tokens fit the model."""
        for r in requests:
            self._check_adapter(r.adapter)
        return [self._encode(r.messages, r.prompt, new_tokens=r.decoding.max_new_tokens) for r in requests]

    def _collect_eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.loaded.model, "generation_config", None), "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        return {i for i in ids if i is not None}

    def _max_positions(self) -> int:
        return int(getattr(self.loaded.model.config, "max_position_embeddings", 1 << 30))


def _fallback_chat(messages: Sequence[dict]) -> str:
    """A plain prompt for tokenizers without a chat template."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"


def check_finite(logits, adapters: Sequence[str | None], mask=None) -> None:
    """Refuse NaN or infinite logits (row ``i`` from ``adapters[i]``; positions where ``mask`` is 0 are padding), so
    broken weights never yield text, a distribution or a likelihood."""
    import torch

    def rows_finite(finite):  # (rows,) or (rows, positions) -> (rows,), padding positions counted as finite
        if mask is not None:
            finite = finite | ~mask.bool()
        return finite.reshape(len(finite), -1).all(dim=-1)

    # a NaN or infinity anywhere makes its sum non-finite: one pass; the exact test only where a sum is not finite
    if bool(rows_finite(torch.isfinite(logits.sum(dim=-1, dtype=torch.float32))).all()):
        return
    finite = rows_finite(torch.isfinite(logits).all(dim=-1))
    if bool(finite.all()):  # finite logits whose sum overflowed
        return
    adapter = adapters[int((~finite).nonzero()[0])]
    source = "the base model" if adapter is None else f"adapter {adapter!r}"
    raise ModPluralError(f"{source} produced NaN or infinite logits (broken weights?); no output of this call was kept")
