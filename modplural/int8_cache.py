"""The int8 cache of a model: its float weights quantized once (``backends.int8_weights``) and saved.

Loading a float32 model and quantizing it would hold every float32 weight at once (6.2 GB for a 1.5B model).
The first int8 load does that once, in the model cache (from a GGUF file directly, with no float32 copy on disk),
and saves the int8 state (weights, scales, norms, and buffers such as the rotary frequencies) as one safetensors
file beside the model's config and tokenizer; later loads build the model on the meta device and assign that
state, so only the int8 weights are ever in memory.
The cache is written to a temporary directory and renamed into place, like the float conversion.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from modplural.backends.int8_weights import FORMAT, int8_skeleton, pack_for_inference, packs, quantize_model
from modplural.cache_files import cache_dir, directory_once, write_error
from modplural.errors import ModPluralError
from modplural.gguf_files import file_digest, read_gguf

STATE_FILE = "int8_state.safetensors"


def int8_dir(source: Path) -> Path:
    """Where the int8 cache of ``source`` (a GGUF file or a float model directory) lives: a GGUF by its name and
    digest (as its float conversion), a directory by its path and its weight files' sizes and modification times,
    so changed weights get a new cache."""
    if source.is_file():
        return cache_dir() / "models" / f"{source.stem}-{file_digest(source)}-{FORMAT}"
    key = hashlib.sha256(str(source.resolve()).encode())
    for weights in sorted(source.glob("*.safetensors")):
        st = weights.stat()
        key.update(f"{weights.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_dir() / "models" / f"{source.name}-{key.hexdigest()[:12]}-{FORMAT}"


def ensure_int8_cache(source: Path, progress: bool = True) -> Path:
    """The int8 cache of ``source`` (a GGUF file, read directly, or a float model directory), written once (one process
    at a time: quantizing the 1.5B takes 10 GB)."""
    final = int8_dir(source)
    return directory_once(final, STATE_FILE, lambda tmp: _write(source, tmp, progress, final))


def _write(source: Path, tmp: Path, progress: bool, final: Path) -> None:
    """Quantize ``source`` and save its int8 state, config, generation config and tokenizer into ``tmp``."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"modplural: quantizing {source.name} to int8 in {final} (once, about a minute)", flush=True)
    if source.is_file():
        model, tokenizer = read_gguf(source)
    else:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source)
    quantize_model(model)
    state = {name: t.contiguous() for name, t in [*model.named_parameters(remove_duplicate=False),
                                                    *model.named_buffers(remove_duplicate=False)] if t is not None}
    try:
        save_file(state, str(tmp / STATE_FILE), metadata={"format": FORMAT})
        model.config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except OSError as exc:  # a full disk
        raise write_error(final.parent, exc) from exc


def load_int8_model(directory: Path):
    """A model built on the meta device from ``directory``'s config, its int8 state assigned (never float weights).

    The state is read tensor by tensor into memory of its own (no memory map: a map's pages stay resident beside any
    copy made from them), and each int8 linear weight is prepacked for oneDNN's kernel as it arrives where that
    kernel is exact (``pack_for_inference``), so the plain and the packed weights of the model are never all held at once."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory)
    config.tie_word_embeddings = False  # the int8 output layer has its own weights
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    int8_skeleton(model)
    path = directory / STATE_FILE
    expected = {name for name, _ in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]}
    with _StateFile(path, directory) as state:
        if set(state.names) != expected:
            missing, extra = sorted(expected - set(state.names)), sorted(set(state.names) - expected)
            raise state.error(f"does not fit the model (missing {missing[:3]}, unexpected {extra[:3]})")
        packed = {name for name in state.names if name.endswith(".weight") and packs(model.get_submodule(name.rpartition(".")[0]))}
        for name, tensor in state.tensors(transient=packed):
            owner_name, _, attr = name.rpartition(".")
            owner = model.get_submodule(owner_name)
            if attr in owner._parameters:
                owner._parameters[attr] = torch.nn.Parameter(tensor, requires_grad=False)
            else:
                owner._buffers[attr] = tensor
                if name in packed:
                    pack_for_inference(owner)
    for module in model.modules():  # rotary embeddings keep a plain copy of their frequencies for dynamic scaling
        if isinstance(getattr(module, "original_inv_freq", None), torch.Tensor) and module.original_inv_freq.is_meta:
            module.original_inv_freq = module.inv_freq.clone()
    if (directory / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(directory)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ModPluralError(f"the int8 cache {path} left {left[:3]} unset: delete {directory} and load again")
    return model


_DTYPES = {"I8": "int8", "U8": "uint8", "I32": "int32", "I64": "int64", "F16": "float16", "BF16": "bfloat16", "F32": "float32", "BOOL": "bool"}


class _StateFile:
    """The int8 cache's safetensors file read as a stream (8-byte header length, JSON header, data), every header
    entry checked against the file's size before any tensor is read."""

    def __init__(self, path: Path, directory: Path) -> None:
        self.path, self.directory = path, directory

    def error(self, what: str) -> ModPluralError:
        return ModPluralError(f"the int8 cache {self.path} {what}: delete {self.directory} and load again")

    def __enter__(self) -> "_StateFile":
        import json
        import struct

        try:
            self.file = open(self.path, "rb")
            size = self.path.stat().st_size
            (length,) = struct.unpack("<Q", self.file.read(8).ljust(8, b"\xff"))
            if length > size - 8:
                raise ValueError(f"a header of {length} bytes in a file of {size}")
            header = json.loads(self.file.read(length))
            header.pop("__metadata__", None)
            self.start, data = 8 + length, size - 8 - length
            self.entries = sorted(((name, _entry(name, e, data)) for name, e in header.items()), key=lambda item: item[1][2])
        except (OSError, ValueError, TypeError, AttributeError, KeyError, struct.error) as exc:
            if hasattr(self, "file"):
                self.file.close()
            raise self.error(f"cannot be read ({' '.join(str(exc).split())})") from exc
        self.names = [name for name, _ in self.entries]
        return self

    def tensors(self, transient: set[str] = frozenset()):
        """(name, tensor) in file order, each in memory of its own, except the ``transient`` ones: those share one
        buffer, valid until the next tensor is read (for weights that are copied at once, such as packed ones:
        freeing one large buffer per weight leaves the allocator's heap fragmented, about 1 GB for the 1.5B)."""
        import torch

        sizes = [end - begin for name, (_, _, begin, end) in self.entries if name in transient]
        scratch = torch.empty(max(sizes, default=0), dtype=torch.uint8)
        for name, (dtype, shape, begin, end) in self.entries:
            raw = scratch[: end - begin] if name in transient else torch.empty(end - begin, dtype=torch.uint8)
            self.file.seek(self.start + begin)
            if self.file.readinto(raw.numpy()) != end - begin:
                raise self.error(f"cannot be read (tensor {name} is cut short)")
            yield name, raw.view(getattr(torch, dtype)).reshape(shape)

    def __exit__(self, *exc) -> None:
        self.file.close()


def _entry(name: str, entry: dict, data: int) -> tuple[str, list[int], int, int]:
    """(torch dtype name, shape, begin, end) of one header entry, checked: a known dtype, a size that fits its shape
    and the data region."""
    import math

    dtype, shape, (begin, end) = _DTYPES[entry["dtype"]], entry["shape"], entry["data_offsets"]
    width = {"int8": 1, "uint8": 1, "bool": 1, "float16": 2, "bfloat16": 2, "int32": 4, "float32": 4, "int64": 8}[dtype]
    if not all(isinstance(v, int) and v >= 0 for v in [*shape, begin, end]) or not begin <= end <= data or end - begin != math.prod(shape) * width:
        raise ValueError(f"tensor {name} has shape {shape} and bytes {begin}..{end} of {data}")
    return dtype, shape, begin, end
