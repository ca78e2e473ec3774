"""Batched engine vs the original's sequential pattern, measured in one process on the same model and prompts.

    python experiments/benchmark.py                       # defaults: a few minutes on a 2-core CPU
    python experiments/benchmark.py --out experiments/results/benchmark.md
    python experiments/benchmark.py --device cuda --dtype bfloat16 --items 256 --reference-items 4   # a GPU

Prints community-message tokens/s, distributional and Overton items/s end to end (messages, then answer
distributions or the Overton answer; no message cache), peak resident memory with all shipped adapters vs the base model alone (fresh
subprocesses), the machine's dense matmul FLOP/s and the share of it the batched engine reaches, and
each ratio ours/reference. Messages are greedy by default, so both engines produce the same texts and do
the same work (``--sampled`` samples them as the method does: then message lengths, and so the work, differ
between engines). The reference runs on the first ``--reference-items`` items only: an unbatched engine's
per-token speed does not depend on how many items it is given, and it is slow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from benchmark_items import ITEMS  # noqa: E402

from modplural.prompts import modplural as prompts  # noqa: E402
from modplural.backends.base import Decoding, GenerateRequest  # noqa: E402
from modplural.assembly import StackSpec, assemble  # noqa: E402
from modplural.communities import load_registry  # noqa: E402
from modplural.methods import ModularPluralism  # noqa: E402
from modplural.pool import MESSAGE_DECODING, CommunityPool  # noqa: E402
from modplural.types import Query  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="base model the adapters are loaded onto (default: the communities' own; e.g. real-shaped random weights)")
    p.add_argument("--registry", default=None, help="community registry (default: the shipped one)")
    p.add_argument("--communities", type=int, default=8, help="how many registry communities to use")
    p.add_argument("--items", type=int, default=16, help=f"items for the batched engine (at most {len(ITEMS)} distinct, repeated beyond)")
    p.add_argument("--reference-items", type=int, default=1, help="items for the sequential reference engine")
    p.add_argument("--new-tokens", type=int, default=64, help="community message length")
    p.add_argument("--main-tokens", type=int, default=64, help="Overton main-LLM response length")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-size", default="auto")
    p.add_argument("--sampled", action="store_true", help="end-to-end runs sample their messages as the method does (work then differs between engines)")
    p.add_argument("--skip-memory", action="store_true", help="do not run the peak-memory subprocesses")
    p.add_argument("--profile", action="store_true", help="also print a torch profile of batched message generation")
    p.add_argument("--out", default=None, help="also write the report (Markdown) here")
    p.add_argument("--memory-probe", choices=["base", "adapters"], default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def queries(n: int, options: bool = True) -> list[Query]:
    """The first ``n`` benchmark items (repeated past the list), with their options or as open questions."""
    return [Query(ITEMS[i % len(ITEMS)][0], options=ITEMS[i % len(ITEMS)][1] if options else None) for i in range(n)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def matmul_flops(device: str, dtype: str) -> float:
    """Dense square matmul FLOP/s on this device and dtype (best of a few runs): the physical ceiling."""
    import torch

    torch_dtype = getattr(torch, dtype)
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, dtype=torch_dtype)
    best = float("inf")
    for _ in range(4):
        sync(device)
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / 3)
    return 2 * n**3 / best


def model_flops_per_token(model) -> tuple[float, float]:
    """FLOPs per processed token in the decoder's linear layers, and per row of output logits."""
    import torch

    head = model.get_output_embeddings()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    return 2.0 * linear, 2.0 * head.weight.numel()


def timed(fn, device: str):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def token_agreement(tokenizer, ours: list[str], reference: list[str]) -> float:
    same = total = 0
    for a, b in zip(ours, reference):
        x, y = tokenizer(a, add_special_tokens=False)["input_ids"], tokenizer(b, add_special_tokens=False)["input_ids"]
        same += sum(p == q for p, q in zip(x, y))
        total += max(len(x), len(y))
    return same / max(total, 1)


def peak_rss_probe(args: argparse.Namespace) -> None:
    """(Subprocess) load the base model, with or without every shipped adapter, run one batch, print peak RSS."""
    import resource

    communities = load_registry(args.registry).select(None)
    with_adapters = args.memory_probe == "adapters"
    spec = StackSpec(model=None if with_adapters else args.model or communities[0].base_model, registry=args.registry, device=args.device, dtype=args.dtype,
                     batch_size=args.batch_size, cache=False, with_pool=with_adapters, community_base=args.model)
    backend = assemble(spec).main
    names = [c.name for c in communities][: args.communities] if with_adapters else [None] * args.communities
    backend.generate([
        GenerateRequest(messages=({"role": "user", "content": prompts.community(Query(q.text), "overton")},), adapter=name, decoding=Decoding(max_new_tokens=16))
        for q in queries(2) for name in names
    ])
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory(args: argparse.Namespace) -> dict[str, float]:
    out = {}
    for probe in ("base", "adapters"):
        command = [sys.executable, __file__, "--memory-probe", probe, "--device", args.device, "--dtype", args.dtype,
                   "--communities", str(args.communities), "--batch-size", str(args.batch_size)]
        command += ["--model", args.model] if args.model else []
        command += ["--registry", args.registry] if args.registry else []
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        out[probe] = json.loads(result.stdout.strip().splitlines()[-1])
        out[probe]["adapters"] = len(load_registry(args.registry).communities) if probe == "adapters" else 0
    return out


def run_engine(engine: str, communities, n_items: int, args: argparse.Namespace, flops: tuple[float, float]) -> dict:
    """Messages (greedy), distributional and Overton end to end on one engine; timings and the texts."""
    spec = StackSpec(communities=[c.name for c in communities], registry=args.registry, engine=engine, device=args.device, dtype=args.dtype,
                     batch_size=args.batch_size, cache=False, community_base=args.model)
    backend = assemble(spec).main  # the communities' backend, also the main LLM (no adapter)
    items = queries(n_items)
    greedy = CommunityPool(backend, communities, Decoding(max_new_tokens=args.new_tokens))
    backend.generate([greedy.request(communities[0], "Hello")])  # warm-up (lazy inits, allocator)
    before = replace(backend.stats)
    messages, seconds = timed(lambda: greedy.messages([prompts.community(Query(q.text), "overton") for q in items]), args.device)
    generated = backend.stats.generated_tokens - before.generated_tokens
    prompt_tokens = backend.stats.prompt_tokens - before.prompt_tokens
    rows = n_items * len(communities)
    result = {
        "engine": engine, "items": n_items, "rows": rows, "message_seconds": seconds, "generated_tokens": generated,
        "tokens_per_s": generated / seconds, "messages": [m[c.name] for m in messages for c in communities],
        "achieved_flops": (flops[0] * (prompt_tokens + generated) + flops[1] * (generated + rows)) / seconds,
    }
    decoding = replace(MESSAGE_DECODING, max_new_tokens=args.new_tokens) if args.sampled else greedy.decoding
    method = ModularPluralism(backend, CommunityPool(backend, communities, decoding), {"main_tokens": args.main_tokens})
    for mode in ("distributional", "overton"):
        before = replace(backend.stats)
        mode_items = items if mode == "distributional" else queries(n_items, options=False)  # Overton: an open answer
        _, seconds = timed(lambda: method.run(mode, mode_items), args.device)
        result[f"{mode}_items_per_s"] = n_items / seconds
        result[f"{mode}_seconds"] = seconds
        result[f"{mode}_tokens_per_item"] = (backend.stats.generated_tokens - before.generated_tokens) / n_items
        result[f"{mode}_processed_per_item"] = (backend.stats.generated_tokens - before.generated_tokens + backend.stats.prompt_tokens - before.prompt_tokens) / n_items
        if engine == "batched":
            result[f"{mode}_phases"] = {phase: getattr(backend.stats, f"{phase}_seconds") - getattr(before, f"{phase}_seconds") for phase in ("prefill", "decode", "scoring")}
    if args.profile and engine == "batched":
        result["profile"] = profile(greedy, items[: max(1, n_items // 4)])
    del backend
    return result


def profile(pool: CommunityPool, items: list[Query]) -> str:
    from torch.profiler import profile as torch_profile

    with torch_profile() as prof:
        pool.messages([prompts.community(Query(q.text), "overton") for q in items])
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def machine(args: argparse.Namespace) -> str:
    import torch

    if args.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} ({platform.machine()}), torch {torch.__version__}"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def report(args, ceiling, ours, ref, mem, command: str) -> str:
    rows_ref = ref["rows"]
    same = sum(a == b for a, b in zip(ours["messages"][:rows_ref], ref["messages"]))
    agreement = token_agreement(ours["tokenizer"], ours["messages"][:rows_ref], ref["messages"])
    ratio = lambda key: ours[key] / ref[key]  # noqa: E731
    lines = [
        "# Benchmark: batched engine vs the original's sequential pattern", "",
        f"- Command: `{command}`",
        f"- Machine: {machine(args)}; device `{args.device}`, dtype `{args.dtype}`, batch size `{args.batch_size}`",
        f"- Model: `{ours['model']}` with {ours['communities']} community adapters; {args.new_tokens} new tokens per message, "
        f"{args.main_tokens} for the Overton answer",
        f"- Items: {ours['items']} for the batched engine ({ours['rows']} message rows), {ref['items']} for the reference ({rows_ref} rows)",
        "",
        "| measure | batched (ours) | sequential (reference) | ratio | target |",
        "|---|---|---|---|---|",
        f"| community-message tokens/s (greedy) | {ours['tokens_per_s']:.1f} | {ref['tokens_per_s']:.1f} | **{ratio('tokens_per_s'):.1f}x** | >= 10x |",
        f"| distributional items/s, end to end | {ours['distributional_items_per_s']:.3f} | {ref['distributional_items_per_s']:.3f} | **{ratio('distributional_items_per_s'):.1f}x** | >= 10x |",
        f"| Overton items/s, end to end | {ours['overton_items_per_s']:.3f} | {ref['overton_items_per_s']:.3f} | {ratio('overton_items_per_s'):.1f}x | |",
    ]
    if mem:
        base, full = mem["base"]["peak_rss_mb"], mem["adapters"]["peak_rss_mb"]
        lines.append(f"| peak RSS, base model alone / with all {mem['adapters']['adapters']} shipped adapters (MB) | {full:.0f} | base alone: {base:.0f} | **{full / base:.2f}x** | <= 1.2x |")
    lines += [
        "",
        f"- Greedy outputs identical on the {rows_ref} shared rows: **{same}/{rows_ref}** (token agreement {agreement:.1%}).",
        f"- Dense {args.dtype} matmul on this machine: {ceiling / 1e9:.1f} GFLOP/s. The batched engine's message generation did "
        f"{ours['achieved_flops'] / 1e9:.1f} GFLOP/s of useful work (prompt and generated tokens through every linear layer, "
        f"no padding counted) = **{ours['achieved_flops'] / ceiling:.0%} of the ceiling**; the reference reached {ref['achieved_flops'] / ceiling:.1%}.",
        f"- Time: batched messages {ours['message_seconds']:.1f} s, distributional {ours['distributional_seconds']:.1f} s, Overton {ours['overton_seconds']:.1f} s; "
        f"reference {ref['message_seconds']:.1f} s, {ref['distributional_seconds']:.1f} s, {ref['overton_seconds']:.1f} s.",
        f"- Messages in the end-to-end runs: {'sampled (temperature 1, top-p 0.9)' if args.sampled else 'greedy, as in the first row'}. Tokens generated per item: "
        f"distributional {ours['distributional_tokens_per_item']:.0f} (ours) vs {ref['distributional_tokens_per_item']:.0f} (reference, which also samples "
        f"a 20-token answer per community), Overton {ours['overton_tokens_per_item']:.0f} vs {ref['overton_tokens_per_item']:.0f}.",
    ]
    for mode, label in (("distributional", "distributional"), ("overton", "Overton")):
        floor = ours[f"{mode}_processed_per_item"] * ours["flops_per_token"] / ceiling  # seconds per item at the ceiling
        lines.append(
            f"- {label}: tokens through the model per item (prompts + generated, no padding; decoder linear layers counted) {ours[f'{mode}_processed_per_item']:.0f} (ours) vs "
            f"{ref[f'{mode}_processed_per_item']:.0f} (reference). At this machine's matmul ceiling our work needs at least {floor:.2f} s per item, "
            f"so no engine doing it could beat the reference by more than **{1 / (floor * ref[f'{mode}_items_per_s']):.1f}x** here; "
            f"we take {1 / ours[f'{mode}_items_per_s']:.2f} s ({floor * ours[f'{mode}_items_per_s']:.0%} of that bound)."
        )
    for mode, label in (("distributional", "distributional"), ("overton", "Overton")):
        phases = ours[f"{mode}_phases"]
        rest = ours[f"{mode}_seconds"] - sum(phases.values())
        lines.append(f"- Where the batched engine's {label} time went: prompt prefill {phases['prefill']:.1f} s, token-by-token decoding "
                     f"{phases['decode']:.1f} s, answer-distribution forward passes {phases['scoring']:.1f} s, everything else (prompts, "
                     f"chat templates, tokenizing, the label index) {rest:.1f} s, of {ours[f'{mode}_seconds']:.1f} s.")
    if "profile" in ours:
        lines += ["", "Where the batched engine's time goes (torch profiler, message generation):", "", "```", ours["profile"].strip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        peak_rss_probe(args)
        return 0
    communities = load_registry(args.registry).select(None)[: args.communities]
    command = "python experiments/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print("measuring the matmul ceiling ...", file=sys.stderr)
    ceiling = matmul_flops(args.device, args.dtype)
    mem = None if args.skip_memory else memory(args)
    from modplural.models import load_model

    loaded = load_model(args.model or communities[0].base_model, device="cpu", dtype="float32")
    flops = model_flops_per_token(loaded.model)
    tokenizer, identity = loaded.tokenizer, loaded.identity
    del loaded
    results = {}
    for engine, n in (("batched", args.items), ("sequential", args.reference_items)):
        print(f"running the {engine} engine on {n} items x {len(communities)} communities ...", file=sys.stderr)
        results[engine] = run_engine(engine, communities, n, args, flops)
    results["batched"].update(tokenizer=tokenizer, model=identity, communities=len(communities), flops_per_token=flops[0])  # decoder linear layers only: a lower bound on the work
    text = report(args, ceiling, results["batched"], results["sequential"], mem, command)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
