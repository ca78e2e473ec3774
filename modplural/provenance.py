"""What a manifest records to say where a result came from: file hashes, the git commit, package versions, and
the machine (the one description runs, training and benchmarks share)."""

from __future__ import annotations

import hashlib
import importlib
import os
import platform
import subprocess
from pathlib import Path

from modplural.data_paths import REPO_ROOT


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str | None:
    """The source tree's HEAD commit, or None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions(*extra: str) -> dict[str, str]:
    """Versions of modplural, torch, transformers, peft, the ``extra`` packages and Python (packages imported here, lazily)."""
    from modplural.version import __version__

    packages = {name: importlib.import_module(name).__version__ for name in ("torch", "transformers", "peft", *extra)}
    return {"modplural": __version__, **packages, "python": platform.python_version()}


# CPU flags that change which kernels run (int8 products need VNNI to be fast, AMX adds matrix units), in this order
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16")


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and flags from /proc/cpuinfo (empty where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return "", set()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    return name, flags


def machine(device=None) -> dict:
    """Where a result was computed: platform, CPU model, cores and vector extensions; with ``device`` (a torch device
    or its name) also the device, torch's thread count and the GPU's name."""
    name, flags = _cpuinfo()
    info = {"platform": platform.platform(), "processor": name or platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "vector_extensions": [flag for flag in VECTOR_FLAGS if flag in flags]}
    if device is not None:
        import torch

        info.update(device=str(device), torch_threads=torch.get_num_threads())
        if str(device).startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def describe_machine(info: dict) -> str:
    """One line for a report: ``AMD EPYC (avx2, avx512f, avx512_vnni), 2 cores, 2 torch threads`` (or the GPU)."""
    if info.get("gpu"):
        return f"{info['gpu']} on {info.get('processor')}"
    vectors = info.get("vector_extensions")
    text = f"{info.get('processor')} ({', '.join(vectors) if vectors else 'no AVX2'}), {info.get('cpu_count')} cores"
    return text + (f", {info['torch_threads']} torch threads" if info.get("torch_threads") is not None else "")
