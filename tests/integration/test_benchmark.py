"""experiments/performance/benchmark.py: a tiny run end to end, and its llama-server peer's skip where nothing can build it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.performance import benchmark
from modplural.backends.packed_linear import packing_available

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_tiny_run_writes_every_row(tmp_path):
    out = tmp_path / "benchmark.md"
    command = [sys.executable, "-m", "experiments.performance.benchmark", "--items", "2", "--communities", "2", "--message-tokens", "3",
               "--greedy-tokens", "2", "--main-tokens", "3", "--skip-memory", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    for row in ("community messages, sampled as the protocol does, tokens/s", "community messages, greedy (identity check), tokens/s",
                "distributional items/s, end to end", "Overton items/s, end to end", "prefix cache, peak memory (MB)"):
        assert f"| {row}" in text
    assert "Greedy outputs identical on the 2 shared rows: **2/2**" in text
    assert "up to 3 new tokens" in text and "--items 2" in text
    assert "- Decoding steps of the sampled messages: " in text and " rows** on average, of the 4 rows" in text and "per round" in text
    assert "- Machine drift: the dense matmul ran at " in text and "  - round 2: messages " in text
    if packing_available("cpu", "float32"):  # the packed engine is measured against its own plain kernels in the same run
        assert "| the same sampled messages, plain matmul kernel" in text and "prepacked over plain kernels" in text
        assert "The batched engine ran with onednn-packed kernels" in text


def test_the_llama_server_peer_is_skipped_where_nothing_can_build_it(monkeypatch):
    from modplural.serving import llama_cpp

    monkeypatch.setattr(llama_cpp, "buildable", lambda: False)
    reason = benchmark.llama_server(benchmark.parse_args(["--peer", "llama-server"]), slots=4, slot_context=64, threads=1)
    assert reason.startswith("skipped:") and "cmake" in reason

