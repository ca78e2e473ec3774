"""Linear layers with oneDNN-prepacked weights on a CPU: the same function, a faster kernel.

On an x86 CPU, ``torch.nn.Linear`` in float32 multiplies through a general matrix product that reads the weight in
its plain row-major layout on every call. oneDNN can reorder a weight once into the blocked layout its kernels read
(``torch.ops.mkldnn._reorder_linear_weight``, what ``torch.compile`` uses on CPUs) and then multiply with it directly
(``_linear_pointwise``). Measured on the 2-core reference CPU (an AVX-512 AMD EPYC; torch 2.13, float32,
SmolLM2-135M's shapes): 2.3-3x the plain kernel's throughput at 16-2048 rows, 1.4x at one row; an earlier AVX2 host
gained less (1.1-1.6x on the decoder's shapes). Results differ from the plain kernel only in the order of
floating-point summation (~2e-6 on these shapes).

``pack_linears`` swaps, in place, every ``nn.Linear``'s weight for its packed copy and its ``forward`` for the packed
kernel. The modules stay the same objects, so forward hooks (the LoRA bank's) keep working, and ``weight`` keeps its
shape, dtype and device. The plain weight is freed, except where another module still holds it (a vocabulary
projection tied to the input embeddings: that one costs a second copy). Packed weights refuse ordinary tensor
arithmetic (``F.linear``, ``.to``, ``state_dict``) with an error, and a packed layer refuses an input that needs a
gradient: a packed model is for inference only.
"""

from __future__ import annotations

PACK_ROWS = 128  # the row count oneDNN is told to expect (the CPU batch cap); measured: any count from 16 to 2048 runs as fast


def packing_available(device: str, dtype: str) -> bool:
    """Whether ``pack_linears`` can run here: a CPU, float32, and a torch built with oneDNN's linear kernels."""
    import torch

    if device != "cpu" or dtype != "float32" or not torch.backends.mkldnn.is_available():
        return False
    try:
        weight = torch.ones(3, 2)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)
        out = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), packed, None, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return bool(torch.equal(out, torch.full((1, 3), 2.0)))


def pack_linears(model) -> int:
    """Give every ``nn.Linear`` of ``model`` a prepacked weight and the packed kernel; the number of layers packed.

    Layers already packed are left as they are, so packing a model twice is harmless.
    """
    import torch

    packed = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear) or module.weight.is_mkldnn:
            continue
        weight = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), PACK_ROWS)
        module.weight = torch.nn.Parameter(weight, requires_grad=False)
        if module.bias is not None:
            module.bias.requires_grad_(False)
        module.forward = _packed_forward(module.weight, module.bias)  # the parameters themselves: _own_the_rest moves the bias's data
        packed += 1
    if packed:
        _own_the_rest(model)
    return packed


def _own_the_rest(model) -> None:
    """Copy the parameters and buffers left unpacked (embeddings, norms) into memory of their own.

    A model loaded from safetensors reads its weights from a memory map of the file; packing reads every linear weight
    through it, and those pages stay resident for as long as any tensor (the input embeddings) still views the file.
    Once nothing does, the map is released and the process holds only the packed weights and these copies.
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        if not tensor.is_mkldnn:
            tensor.data = tensor.data.clone()


def _packed_forward(weight, bias):
    import torch

    def forward(x):
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("a linear layer with a prepacked weight has no gradient (packed models are for inference only)")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    return forward
