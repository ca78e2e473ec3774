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

from modplural.backends.int8_weights import FORMAT, int8_skeleton, quantize_model
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
    """A model built on the meta device from ``directory``'s config, its int8 state assigned (never float weights)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory)
    config.tie_word_embeddings = False  # the int8 output layer has its own weights
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    int8_skeleton(model)
    path = directory / STATE_FILE
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModPluralError(f"the int8 cache {path} cannot be read ({' '.join(str(exc).split())}): delete {directory} and load again") from exc
    expected = {name for name, _ in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ModPluralError(f"the int8 cache {path} does not fit the model (missing {missing[:3]}, unexpected {extra[:3]}): "
                             f"delete {directory} and load again")
    for name, tensor in state.items():
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        if attr in owner._parameters:
            owner._parameters[attr] = torch.nn.Parameter(tensor, requires_grad=False)
        else:
            owner._buffers[attr] = tensor
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
