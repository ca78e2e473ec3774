"""Which int8 product this CPU has, and how fast it is against float32: the measurement behind ``main_weight_format:
auto`` (int8 only where ``int8_fast``). One of the 1.5B's widest linear layers (1536 -> 8960) on a prompt-sized batch
of rows, each kernel timed in the same run on the same machine; ratios only, never absolute times across hosts.

    python -m experiments.performance.int8_kernels [--rows 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time


from modplural.provenance import describe_machine, machine
from modplural.backends.int8_weights import _onednn_exact, int8_fast


def timed(run, repeats: int) -> float:
    """The median seconds of ``run()`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows, inner, outer = args.rows, 1536, 8960
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, inner, generator=generator)
    w = torch.randn(outer, inner, generator=generator)
    q = torch.randint(-127, 128, (rows, inner), dtype=torch.int8, generator=generator)
    wq = torch.randint(-127, 128, (outer, inner), dtype=torch.int8, generator=generator)
    kernels = {"float32 matmul": lambda: x @ w.t(), "torch._int_mm (int8)": lambda: torch._int_mm(q, wq.t())}
    if _onednn_exact():
        packed = torch.ops.onednn.qlinear_prepack(wq, None)
        qu, ones, zeros = (q.to(torch.int16) + 128).to(torch.uint8), torch.ones(outer), torch.zeros(outer, dtype=torch.int64)
        kernels["oneDNN u8s8 prepacked (int8)"] = lambda: torch.ops.onednn.qlinear_pointwise(qu, 1.0, 128, packed, ones, zeros, None, 1.0, 0, torch.float32, "none", [], "")
    seconds = {name: timed(run, args.repeats) for name, run in kernels.items()}
    reference = seconds["float32 matmul"]
    print(f"machine: {describe_machine(machine('cpu'))}")
    print(f"a {rows} x {inner} input times a {inner} x {outer} weight, median of {args.repeats}")
    for name, value in seconds.items():
        print(f"  {name:<32} {value:8.4f} s   {value / reference:6.2f}x float32's time")
    print(f"oneDNN's u8s8 kernel exact here: {_onednn_exact()}; main_weight_format auto picks {'int8' if int8_fast('cpu') else 'float'}")


if __name__ == "__main__":
    main()
