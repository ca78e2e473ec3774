"""Int8 weights for a CPU: linear layers and the input embedding stored in 8 bits, a quarter of float32's memory.

Each linear weight is stored as int8 with one float32 scale per output row (symmetric, ``max |w| / 127``). Its
input is quantized on every call in two int8 passes, each with one scale per row of the batch (``_two_passes``:
the second pass quantizes the first one's rounding residual), and the products run in integer arithmetic, then
are rescaled to float32: ``y = (s1 * (q1 @ q(W)^T) + s2 * (q2 @ q(W)^T)) * s_W``. Integer sums are exact, so a
layer's output row depends on its input row alone, never on the other rows of its batch or on their order, and
the two kernels used (oneDNN's prepacked u8s8 product where the CPU sums it exactly, ``torch._int_mm`` elsewhere)
give the same numbers. What is not exact is the float code between layers (attention, norms), whose summation
order depends on the batch's shape; where that moves an input across a rounding step of the quantization, the
difference grows to one step (measured on the 1.5B: 1.3e-4 and 2.5e-4 in an option probability between a row in
a batch and the row alone, against about 1e-6 in float32). The input embedding is stored the same way and dequantized on lookup. Norms and biases stay in float32; activations between layers are float32.

Memory, speed and agreement with float32 on the 1.5B main LLM and real VITAL prompts are measured, in one run
against float32 on the same host, by ``experiments/performance/lean_weights_agreement.py``
(``experiments/results/lean_weights_agreement/report.md``). The rounding happens once per layer input; a layer's inputs
are float32, so the int8 layers compose with float code around them (norms, attention, LoRA deltas).

``quantize_model`` converts a loaded float model in place; ``int8_skeleton`` gives a model's int8 modules without
data, so a saved int8 state dict can be loaded without ever holding the float32 weights (``models`` caches it);
``pack_for_inference`` moves the weights into oneDNN's layout where its kernel is exact and keeps no plain copy
(holding both took 1.5 GB more for the 1.5B). Int8 layers are for inference only: they hold no gradient.
"""

from __future__ import annotations

import threading

FORMAT = "int8-rowwise-v1"  # recorded in cache keys, manifests and the int8 cache's directory name


def _torch():
    import torch

    return torch


def _rowwise(weight):
    """(int8 values, float32 scale per row) of a 2-D float tensor."""
    torch = _torch()
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    return torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8), scale


def int8_available(device: str) -> bool:
    """Whether int8 weights run here: a CPU whose torch has the int8 matrix product."""
    torch = _torch()
    if device != "cpu":
        return False
    try:
        out = torch._int_mm(torch.ones(1, 8, dtype=torch.int8), torch.ones(8, 8, dtype=torch.int8))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return bool(torch.equal(out, torch.full((1, 8), 8, dtype=torch.int32)))


def int8_fast(device: str) -> bool:
    """Whether int8 weights run here faster than float32 ones: on oneDNN's u8s8 kernel, which needs a CPU that sums
    exactly (VNNI). Without it ``torch._int_mm`` is the product, about 20x slower than a float32 one on an AVX2 CPU
    (``experiments/performance/int8_kernels.py``), so ``main_weight_format: auto`` keeps float weights there."""
    return int8_available(device) and _onednn_exact()


_SCRATCH = threading.local()  # one reusable float buffer per thread: fresh large tensors cost a page fault per 4 KiB


def _scratch(rows):
    """A float32 buffer shaped like ``rows`` (grown as needed, reused across calls)."""
    torch = _torch()
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.numel() < rows.numel() or buffer.device != rows.device:
        buffer = _SCRATCH.buffer = torch.empty(rows.numel(), dtype=torch.float32, device=rows.device)
    return buffer[: rows.numel()].view(rows.shape)


def _two_passes(rows, unsigned: bool):
    """Rows quantized to 8 bits in two passes, one scale per row and pass: ``x ~ s1 * q1 + s2 * q2``, ``q2`` the rounding
    residual of the first pass; returns ``(cat(q1, q2), cat(s1, s2))``, the values as int8, or as uint8 offset by 128
    with ``unsigned``. The second pass takes the activation error from about 1/254 of a row's largest value to about
    1/64516 (Qwen2.5's rows have a few very large channels). Every step runs in place in one scratch buffer."""
    torch = _torch()
    n = rows.shape[0]
    offset = 128.0 if unsigned else 0.0
    out = torch.empty(2 * n, rows.shape[1], dtype=torch.uint8 if unsigned else torch.int8, device=rows.device)
    work = _scratch(rows)
    scales = []
    source = rows
    for half in (slice(0, n), slice(n, 2 * n)):
        scale = torch.maximum(source.amax(dim=1, keepdim=True), source.amin(dim=1, keepdim=True).neg_()).clamp_min_(1e-30).div_(127.0)
        torch.div(source, scale, out=work).round_()  # |q| <= 127: the row's largest value maps to 127
        out[half] = work.add_(offset)
        scales.append(scale)
        if half.start == 0:  # the residual rows - q1 * s1, in place
            work.sub_(offset).mul_(scale)
            torch.sub(rows, work, out=work)
            source = work
    return out, torch.cat(scales)


_EXACT: bool | None = None


def _onednn_exact() -> bool:
    """Whether oneDNN's u8s8 kernel sums exactly here (CPUs without VNNI saturate 16-bit partial sums): probed once
    against ``_int_mm`` on the inputs that saturate."""
    global _EXACT
    if _EXACT is None:
        torch = _torch()
        try:
            weight = torch.full((16, 64), 127, dtype=torch.int8)
            q = torch.full((4, 64), 127, dtype=torch.int8)
            packed = torch.ops.onednn.qlinear_prepack(weight, None)
            out = torch.ops.onednn.qlinear_pointwise((q.to(torch.int16) + 128).to(torch.uint8), 1.0, 128, packed, torch.ones(16),
                                                     torch.zeros(16, dtype=torch.int64), None, 1.0, 0, torch.float32, "none", [], "")
            _EXACT = bool(torch.equal(out, torch._int_mm(q, weight.t()).float()))
        except (AttributeError, RuntimeError, NotImplementedError):
            _EXACT = False
    return _EXACT


def _module_classes():
    """The two int8 module classes (defined on first use, so importing this module does not import torch)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    torch = _torch()

    class Int8Linear(torch.nn.Module):
        """``nn.Linear`` with an int8 weight (one scale per output row) and an int8 product (one scale per input row)."""

        compute_dtype = torch.float32

        def __init__(self, in_features: int, out_features: int, bias: bool, device=None) -> None:
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8, device=device))
            self.register_buffer("weight_scale", torch.empty(out_features, dtype=torch.float32, device=device))
            self.register_buffer("bias", torch.empty(out_features, dtype=torch.float32, device=device) if bias else None)
            self._packed = None  # oneDNN's prepacked copy of ``weight``, made on first use where it is exact

        def forward(self, x):
            if x.requires_grad and torch.is_grad_enabled():
                raise RuntimeError("an int8 linear layer has no gradient (int8 models are for inference only)")
            shape = x.shape
            rows = x.reshape(-1, shape[-1]).float()
            n = rows.shape[0]
            both, scales = _two_passes(rows, unsigned=self._packed is not None)
            products = self._product(both)  # (2n, out), each row already times the weight's scales
            out = products[n:].mul_(scales[n:]).addcmul_(products[:n], scales[:n])  # in place: no fresh (n, out) tensor
            if self.bias is not None:
                out.add_(self.bias)
            return out.reshape(*shape[:-1], self.out_features)

        def pack(self) -> None:
            """Move the weight into oneDNN's prepacked u8s8 layout, which takes uint8 inputs offset by 128, and let the
            plain int8 weight go (keeping both would hold the weights twice): for inference, where that kernel is exact."""
            self._packed = torch.ops.onednn.qlinear_prepack(self.weight, None)
            self._zeros = torch.zeros(self.out_features, dtype=torch.int64)
            self.weight = None

        @property
        def device(self):
            return self.weight_scale.device

        def _product(self, q):
            """(q @ W^T) * s_W as float32, from exact integer sums."""
            if self._packed is not None:
                return torch.ops.onednn.qlinear_pointwise(q, 1.0, 128, self._packed, self.weight_scale, self._zeros, None, 1.0, 0,
                                                          torch.float32, "none", [], "")
            return torch._int_mm(q, self.weight.t()).float().mul_(self.weight_scale)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"

    class Int8Embedding(torch.nn.Module):
        """``nn.Embedding`` with int8 rows (one scale per row), dequantized to float32 on lookup."""

        def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None, device=None) -> None:
            super().__init__()
            self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
            self.register_buffer("weight", torch.empty(num_embeddings, embedding_dim, dtype=torch.int8, device=device))
            self.register_buffer("weight_scale", torch.empty(num_embeddings, dtype=torch.float32, device=device))

        def forward(self, ids):
            return torch.nn.functional.embedding(ids, self.weight).float().mul_(self.weight_scale[ids].unsqueeze(-1))

    _CLASSES = (Int8Linear, Int8Embedding)
    return _CLASSES


_CLASSES = None


def is_int8(model) -> bool:
    """Whether ``model`` holds int8 layers."""
    int8_linear, int8_embedding = _module_classes()
    return any(isinstance(m, (int8_linear, int8_embedding)) for m in model.modules())


def _replace(model, make) -> int:
    """Replace every ``nn.Linear`` and ``nn.Embedding`` by ``make(module)``; the number replaced."""
    torch = _torch()
    targets = [(name, m) for name, m in model.named_modules() if type(m) in (torch.nn.Linear, torch.nn.Embedding)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, make(module))
    return len(targets)


def packs(module) -> bool:
    """Whether ``pack_for_inference`` packs ``module``: an int8 linear layer, where oneDNN's u8s8 kernel is exact."""
    return isinstance(module, _module_classes()[0]) and _onednn_exact()


def pack_for_inference(module) -> int:
    """Prepack the int8 linear layers of ``module`` (one layer or a model) that hold a CPU weight for oneDNN's u8s8
    kernel where it is exact here, letting their plain int8 weights go (they cannot be saved or trained afterwards);
    the number packed."""
    linears = [m for m in module.modules() if packs(m) and m.weight is not None and m.weight.device.type == "cpu"]
    for m in linears:
        m.pack()
    return len(linears)


def int8_skeleton(model) -> int:
    """Give ``model`` empty int8 modules in place of its linear layers and embeddings (for loading an int8 state)."""
    torch = _torch()
    int8_linear, int8_embedding = _module_classes()

    def make(m):
        device = m.weight.device
        if isinstance(m, torch.nn.Linear):
            return int8_linear(m.in_features, m.out_features, m.bias is not None, device=device)
        return int8_embedding(m.num_embeddings, m.embedding_dim, m.padding_idx, device=device)

    return _replace(model, make)


def quantize_model(model) -> int:
    """Convert ``model``'s linear layers and embeddings to int8 in place (a tied output layer gets its own copy);
    the number of modules converted."""
    torch = _torch()
    int8_linear, int8_embedding = _module_classes()

    def make(m):
        values, scale = _rowwise(m.weight)
        if isinstance(m, torch.nn.Linear):
            q = int8_linear(m.in_features, m.out_features, m.bias is not None, device=m.weight.device)
            if m.bias is not None:
                q.bias = m.bias.detach().float().clone()
        else:
            q = int8_embedding(m.num_embeddings, m.embedding_dim, m.padding_idx, device=m.weight.device)
        q.weight, q.weight_scale = values, scale
        return q

    with torch.no_grad():
        count = _replace(model, make)
    model.config.tie_word_embeddings = False  # the output layer now has weights of its own
    return count
