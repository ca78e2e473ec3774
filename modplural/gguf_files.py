"""GGUF files: the magic check, a cheap content key, the dequantized model, and its float32 safetensors cache."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from modplural.cache_files import cache_dir, directory_once, write_error
from modplural.errors import ModPluralError

GGUF_MAGIC = b"GGUF"


def one_line(exc: Exception) -> str:
    """An exception's message on one line (transformers' messages often span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def check_gguf_magic(path: Path) -> None:
    """Refuse a ``.gguf`` file that does not start with the GGUF magic bytes (e.g. a renamed text file)."""
    with path.open("rb") as f:
        if f.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ModPluralError(f"model file {path} is not a GGUF file: it does not start with the GGUF magic bytes")


def file_digest(path: Path) -> str:
    """A cheap stable key for a large file: size, and sha256 of its first and last MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def read_gguf(gguf: Path):
    """(float32 model, tokenizer) dequantized from a GGUF file, with no trace of the quantization left in the config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (OSError, ValueError, KeyError, IndexError, EOFError, NotImplementedError, struct.error) as exc:
        raise ModPluralError(f"could not read the GGUF file {gguf}: {one_line(exc)}") from exc
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def float_dir(gguf: Path) -> Path:
    """Where the float32 safetensors conversion of ``gguf`` lives."""
    return cache_dir() / "models" / f"{gguf.stem}-{file_digest(gguf)}"


def converted_gguf_dir(gguf: Path, progress: bool = True) -> Path:
    """Return a safetensors copy of a GGUF model, converting it once (one process at a time; the others wait)."""
    final = float_dir(gguf)

    def fill(tmp: Path) -> None:
        if progress:
            print(f"modplural: converting {gguf.name} to a safetensors cache in {final} (once, about 30 s per GB of GGUF)", flush=True)
        model, tokenizer = read_gguf(gguf)
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        except OSError as exc:  # a full disk
            raise write_error(final.parent, exc) from exc

    return directory_once(final, "config.json", fill)
