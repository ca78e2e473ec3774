"""Many LoRA adapters on one base model, applied per batch row with forward hooks (no model surgery).

Each adapted ``nn.Linear`` keeps the LoRA factors of every loaded adapter. For a batch whose row ``i``
uses adapter ``a_i`` (or none), the hook adds

    delta_i = (x_i @ A_used.T)[own block of a_i] @ B[a_i] * scaling[a_i]

where ``A_used`` stacks the ``A`` factors of the adapters present in the batch as one
``(n_present * r, in)`` matrix (ranks zero-padded to the largest) and ``B[a_i]`` is row ``i``'s own ``B``
factor, gathered per row once per batch. That is one dense matmul for every ``A`` and one batched matmul
for the rows' own ``B``, whatever the mix of adapters, instead of peft's loop over adapters with a gather
and a scatter each (``adapter_names=``). Each row's own block is *selected* (indexing and
``torch.where``), never masked by multiplying with zeros: a row's output depends on its own adapter only,
so an adapter with NaN or infinite factors cannot leak into other rows (NaN * 0 is NaN). Only the order of
floating-point summation can differ from peft's single-adapter path (measured in tests: identical greedy
text, probabilities within 1e-5). The extra work is ``n_present * r / in_features`` of the base layer's
for ``A`` plus the ``B`` products.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from modplural.backends.adapter_files import AdapterFiles
from modplural.errors import ModPluralError

_PREFIX = "base_model.model."


@dataclass
class _Factors:
    """One adapter's factors for one layer."""

    a: "object"  # (r, in)
    b: "object"  # (out, r)
    scaling: float


class _AdaptedLinear:
    """The factors of one ``nn.Linear`` and the hook that applies them per batch row."""

    def __init__(self, module) -> None:
        self.module = module
        self.factors: dict[int, _Factors] = {}
        self.rank = 0
        self.a = None  # (n_present * rank, in): the A factors of the batch's adapters, stacked
        self.b = None  # (rows, rank, out): each row's own B factor (zeros for base-model rows)
        self.slot = None  # (rows,): each row's slot among the present adapters (0 for base-model rows)
        self.used = None  # (rows, 1, 1): whether the row uses an adapter
        self.scaling = None  # (rows, 1, 1)
        self.handle = module.register_forward_hook(self._hook)

    def prepare(self, present: Sequence[int], rows: Sequence[int], rank: int) -> None:
        """Stack the A factors of the ``present`` adapters (zero-padded to ``rank``) and gather each row's own B."""
        import torch

        device, dtype = _device_dtype(self.module)
        n = len(present)
        a = torch.zeros(n * rank, self.module.in_features, dtype=dtype, device=device)
        b = torch.zeros(n, rank, self.module.out_features, dtype=dtype, device=device)
        scale = torch.zeros(n, dtype=dtype, device=device)
        for slot, adapter in enumerate(present):
            f = self.factors.get(adapter)
            if f is None:
                continue
            r = f.a.shape[0]
            a[slot * rank : slot * rank + r] = f.a
            b[slot, :r] = f.b.T
            scale[slot] = f.scaling
        slot_of = {adapter: slot for slot, adapter in enumerate(present)}
        slots = torch.tensor([slot_of.get(r, -1) for r in rows], device=device)
        used = (slots >= 0)[:, None, None]
        self.slot = slots.clamp(min=0)
        self.a, self.rank, self.used = a, rank, used
        self.b = torch.where(used, b[self.slot], 0)
        self.scaling = torch.where(used, scale[self.slot][:, None, None], 0)

    def keep_rows(self, index) -> None:
        """Follow the batch when finished rows are dropped."""
        if self.a is not None:
            self.b, self.slot, self.used, self.scaling = self.b[index], self.slot[index], self.used[index], self.scaling[index]

    def clear(self) -> None:
        self.a = self.b = self.slot = self.used = self.scaling = None

    def _hook(self, module, inputs, output):
        if self.a is None:
            return None
        import torch

        x = inputs[0]
        blocks = (x @ self.a.T).unflatten(-1, (-1, self.rank))  # (rows, seq, n_present, rank)
        own = blocks[torch.arange(len(self.slot), device=x.device), :, self.slot]  # (rows, seq, rank)
        own = torch.where(self.used, own, 0)
        return output + (own @ self.b) * self.scaling


class LoraBank:
    """Loads peft LoRA adapters into hooks on a base model and activates them per batch row."""

    def __init__(self, model) -> None:
        self.model = model
        self.names: list[str] = []
        self._layers: dict[str, _AdaptedLinear] = {}
        self._rank = 0

    def add(self, adapter: AdapterFiles) -> None:
        """Load ``adapter`` (peft format) under its name; nothing changes if it cannot be served."""
        import torch

        name, path, config = adapter.name, adapter.path, adapter.config
        _check_supported(name, path, config)
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in adapter.weights.items():
            match = re.fullmatch(r"(.+)\.lora_([AB])\.weight", key)
            if match is None:
                raise ModPluralError(f"adapter {name!r} at {path}: unsupported tensor {key} (only LoRA A/B weights can be served batched)")
            pairs.setdefault(match.group(1).removeprefix(_PREFIX), {})[match.group(2)] = tensor
        modules = dict(self.model.named_modules())
        staged: dict[str, _Factors] = {}
        for module_name, pair in pairs.items():
            module = modules.get(module_name)
            linear = isinstance(module, torch.nn.Linear) or hasattr(module, "compute_dtype")  # compute_dtype: an int8 linear layer
            if module is None or not linear or set(pair) != {"A", "B"}:
                raise ModPluralError(f"adapter {name!r} at {path}: layer {module_name} is not a linear layer of this model with both LoRA factors")
            a, b = pair["A"], pair["B"]
            if a.shape[1] != module.in_features or b.shape[0] != module.out_features or a.shape[0] != b.shape[1]:
                raise ModPluralError(f"adapter {name!r} at {path}: layer {module_name} has LoRA shapes {tuple(a.shape)}/{tuple(b.shape)} that do not fit ({module.out_features}, {module.in_features})")
            alpha = _pattern_value(config.get("alpha_pattern") or {}, module_name, config.get("lora_alpha", 8))
            r = a.shape[0]
            scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
            device, dtype = _device_dtype(module)
            staged[module_name] = _Factors(a.to(device, dtype), b.to(device, dtype), scaling)
        if not staged:
            raise ModPluralError(f"adapter {name!r} at {path} holds no LoRA weights")
        index = len(self.names)
        for module_name, factors in staged.items():
            if module_name not in self._layers:
                self._layers[module_name] = _AdaptedLinear(modules[module_name])
            self._layers[module_name].factors[index] = factors
            self._rank = max(self._rank, factors.a.shape[0])
        self.names.append(name)

    @contextlib.contextmanager
    def rows(self, adapters: Sequence[str | None]) -> Iterator["LoraBank"]:
        """Within the block, batch row ``i`` runs with adapter ``adapters[i]`` (``None``: the base model)."""
        indices = [self.names.index(a) if a is not None else -1 for a in adapters]
        present = sorted({i for i in indices if i >= 0})
        if present:
            for layer in self._layers.values():
                layer.prepare(present, indices, self._rank)
        try:
            yield self
        finally:
            for layer in self._layers.values():
                layer.clear()

    def keep_rows(self, index) -> None:
        """Drop the batch rows not in ``index`` (a tensor of kept row positions)."""
        for layer in self._layers.values():
            layer.keep_rows(index)


def _pattern_value(patterns: dict, module_name: str, default):
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?{key}$", module_name):
            return value
    return default


def _check_supported(name: str, path: Path, config: dict) -> None:
    """Refuse adapter features that the batched engine does not implement (the sequential engine runs them through peft)."""
    if config.get("peft_type", "LORA") != "LORA":
        raise ModPluralError(f"adapter {name!r} at {path} is a {config['peft_type']} adapter; only LoRA adapters are supported")
    unsupported = [key for key in ("use_dora", "fan_in_fan_out", "modules_to_save", "layer_replication", "lora_bias", "trainable_token_indices") if config.get(key)]
    if config.get("bias", "none") != "none":
        unsupported.append("bias")
    if unsupported:
        raise ModPluralError(f"adapter {name!r} at {path} uses {', '.join(unsupported)}, which the batched engine does not serve; use --engine sequential")


def _device_dtype(module):
    """Where a linear layer's LoRA factors live and in which dtype: its weight's, or for an int8 layer (whose weight
    may be prepacked away) its own device and float32, the dtype it computes in."""
    if hasattr(module, "compute_dtype"):
        return module.device, module.compute_dtype
    return module.weight.device, module.weight.dtype
