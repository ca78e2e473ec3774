"""llama.cpp's ``llama-server`` for our communities: build it once, convert peft adapters to GGUF LoRA, start it.

The source is the llama.cpp tree vendored in the ``llama-cpp-python`` sdist on PyPI (pinned below), so
it builds from a registry that every machine here can reach; the binary and converted adapters are cached
under ``$MODPLURAL_CACHE/llama.cpp-<version>/``. Building takes a few minutes on a 2-core CPU, once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

from modplural.cache_files import exclusive
from modplural.errors import ModPluralError
from modplural.cache_files import cache_dir

LLAMA_CPP_PYTHON = "0.3.36"  # its sdist vendors llama.cpp; bump deliberately (the server API moves)


def llama_cpp_home() -> Path:
    return cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def _exclusive():
    """Hold the llama.cpp cache's lock: one process at a time downloads, builds or converts (others wait, then reuse)."""
    return exclusive(llama_cpp_home() / ".lock")


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ModPluralError(f"{what} failed ({' '.join(command[:3])} ...): {' | '.join(tail)}")


def source_tree() -> Path:
    """The vendored llama.cpp source, downloaded (pip) and unpacked once."""
    home = llama_cpp_home()
    tree = home / "src" / "llama.cpp"
    if (tree / "CMakeLists.txt").is_file():
        return tree
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", tmp],
             "downloading the llama.cpp sources (pip download llama-cpp-python)")
        [archive] = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(Path(tmp) / "llama.cpp", members=members, filter="data")
        tree.parent.mkdir(parents=True, exist_ok=True)
        os.rename(Path(tmp) / "llama.cpp", tree)
    return tree


def _binary_path() -> Path:
    return llama_cpp_home() / "bin" / "llama-server"


def buildable() -> bool:
    """Whether ``llama-server`` is built already, or cmake and a C++ compiler are here to build it."""
    return _binary_path().is_file() or all(shutil.which(tool) for tool in ("cmake", "c++"))


def server_binary(progress: bool = True) -> Path:
    """``llama-server``, built from source on first use (cmake; about 5-10 minutes on 2 cores)."""
    binary = _binary_path()
    if binary.is_file():
        return binary
    if shutil.which("cmake") is None:
        raise ModPluralError("building llama-server needs cmake and a C++ compiler (apt install cmake g++)")
    with _exclusive():
        return binary if binary.is_file() else _build(binary, progress)


def _build(binary: Path, progress: bool) -> Path:
    tree = source_tree()
    build = llama_cpp_home() / "build"
    if progress:
        print(f"modplural: building llama-server in {build} (once, several minutes)", file=sys.stderr, flush=True)
    _run(["cmake", "-S", str(tree), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
          "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON", "-DBUILD_SHARED_LIBS=OFF"], "configuring llama.cpp")
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 2)], "building llama-server")
    built = next(iter(build.rglob("llama-server")), None)
    if built is None:
        raise ModPluralError(f"llama-server was not produced under {build}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    shutil.copy2(built, tmp)
    os.replace(tmp, binary)
    return binary


def convert_adapter(adapter_dir: Path, base_dir: Path) -> Path:
    """A GGUF LoRA file for a peft adapter, made by llama.cpp's own ``convert_lora_to_gguf.py`` (cached by content)."""
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModPluralError(f"adapter {adapter_dir} has no adapter_model.safetensors")
    digest = hashlib.sha256(weights.read_bytes() + (adapter_dir / "adapter_config.json").read_bytes()).hexdigest()[:12]
    out = llama_cpp_home() / "loras" / digest / f"{adapter_dir.name}.gguf"
    if out.is_file():
        return out
    with _exclusive():
        return out if out.is_file() else _convert(adapter_dir, base_dir, out)


def _convert(adapter_dir: Path, base_dir: Path, out: Path) -> Path:
    tree = source_tree()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    env = {**os.environ, "PYTHONPATH": str(tree / "gguf-py") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, str(tree / "convert_lora_to_gguf.py"), "--base", str(base_dir), "--outtype", "f32", "--outfile", str(tmp), str(adapter_dir)],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0 or not tmp.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-2:]
        raise ModPluralError(f"converting adapter {adapter_dir} to GGUF failed: {' | '.join(tail)}")
    os.replace(tmp, out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_has_amx() -> bool:
    """Whether this CPU reports AMX tiles (Linux ``/proc/cpuinfo``)."""
    try:
        return " amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def amx_workaround() -> list[str]:
    """``--no-repack`` on a CPU with AMX: this llama.cpp build's AMX weight buffers die with SIGILL at the first
    batch there (measured 2026-12-02 on a 2-core Xeon with AMX-INT8: exit 132 without the flag, answers with it).
    The flag turns off all of llama.cpp's extra CPU weight layouts (AMX and repacking), so llama-server runs its
    plain kernels on such hosts; a benchmark against it says so (``experiments/performance/main_llm_benchmark.py``)."""
    return ["--no-repack"] if cpu_has_amx() else []


def start_server(model_gguf: Path, loras: Mapping[str, Path], port: int | None = None, alias: str = "base", threads: int = 2,
                 parallel: int = 4, context: int = 4096, log: Path | None = None, ready_timeout: float = 120.0,
                 extra: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """Start ``llama-server`` serving ``model_gguf`` with the ``loras`` (loaded at scale 0; chosen per request);
    ``extra``: more command-line options.

    Returns the process and the OpenAI base URL once ``/health`` answers. The LoRA files are named after
    their communities so that ``GET /lora-adapters`` lists them by name.
    """
    port = port or free_port()
    links = llama_cpp_home() / "named" / f"{port}"
    links.mkdir(parents=True, exist_ok=True)
    command = [str(server_binary()), "-m", str(model_gguf), "--host", "127.0.0.1", "--port", str(port), "--alias", alias,
               "-t", str(threads), "-np", str(parallel), "-c", str(context), "--lora-init-without-apply", *amx_workaround(), *extra]
    for name, path in loras.items():
        link = links / f"{name}.gguf"
        link.unlink(missing_ok=True)
        link.symlink_to(path)
        command += ["--lora", str(link)]
    if log:
        with open(log, "ab") as output:  # the server keeps its own copy of the descriptor
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    else:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, url, ready_timeout, log)
    except BaseException:  # also Ctrl-C: never leave a server behind
        process.kill()
        process.wait()
        raise
    return process, url + "/v1"


def _wait_ready(process: subprocess.Popen, url: str, timeout: float, log: Path | None) -> None:
    """Return once ``/health`` answers 200; a one-line error if the server exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ModPluralError(f"llama-server exited with code {process.returncode} while starting (log: {log or 'not kept'})")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ModPluralError(f"llama-server did not become ready within {timeout:g} s")


def stop_server(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the server has not exited after ``grace`` seconds (it may wait on busy slots)."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
