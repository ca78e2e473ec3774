"""The batched engine on Modular Pluralism's own workload, against the original's sequential pattern and llama.cpp.

    python -m experiments.performance.benchmark --peer llama-server --out experiments/results/benchmark/report.md   # the real workload: ~40 min on 2 CPU cores
    python -m experiments.performance.benchmark --items 2 --message-tokens 8 --greedy-tokens 4 --main-tokens 8 --skip-memory   # a quick look
    python -m experiments.performance.benchmark --device cuda --dtype bfloat16 --items 256 --reference-items 4   # a GPU

Headline rows use the protocol's own message decoding (``assembly.message_decoding``: temperature 1.0, top-p 0.9,
top-k 50, 200 new tokens, one seed per request from (seed, community, prompt), the same in every engine) and
count the tokens each engine generated. Printed: community-message tokens/s (the batched engine in a fresh
process, so its peak memory is the workload's); a greedy run whose texts must be identical to the reference's on
the shared rows; distributional and Overton items/s end to end (messages, then answer distributions or the
Overton answer; no message cache), with prefix KV reuse off and on where the engine has it; the physical bound
of each mode before and after reuse (the machine's dense matmul FLOP/s against the tokens each item puts through
the model); peak resident memory with all shipped adapters vs the base model alone (fresh processes); with
``--peer llama-server``, the same message workload over HTTP on the project's llama-server build (the shipped
adapters converted to GGUF LoRA, chosen per request, one slot per batch row). The reference runs on the first
``--reference-items`` items only: an unbatched engine's per-token speed does not depend on how many it is given.
Every engine is timed ``--rounds`` times, each round in the reverse order of the one before (ours, reference,
llama-server; then llama-server, reference, ours): on a shared machine the speed drifts while engines are timed one
after the other, alternation cancels a steady drift, and the table sums the rounds. The dense matmul is timed
before and after each round and the report prints it with each round's ratios, so what drift is left shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from experiments.performance.benchmark_items import ITEMS

from modplural.provenance import describe_machine, machine as provenance_machine
from modplural.assembly import StackSpec, assemble, message_decoding
from modplural.backends.base import Decoding, GenerateRequest
from modplural.communities import load_registry
from modplural.errors import ModPluralError
from modplural.methods.registry import build_method
from modplural.pool import CommunityPool
from modplural.prompts import modplural as prompts
from modplural.protocol import Protocol, resolve_protocol
from modplural.types import Query

MODES = ("distributional", "overton")
TARGETS = {"messages": 20.0, "distributional": 10.0, "peer": 3.0, "memory": 1.2}
PEAK_FIELDS = ("prefix_cache_peak_bytes",)  # EngineStats fields that are peaks, not counters
LEVERS = {  # what would shorten each phase of the batched engine's time
    "prefill": "fewer prompt tokens per item (more shared prefixes reused) or a faster prompt matmul (bf16/int8 on a CPU with AMX or AVX-512 BF16, or a GPU)",
    "decode": "more rows per decoding step (bigger batches: more items) or a device where a decoding step costs less relative to reading prompts",
    "scoring": "answer prompts that reuse the KV cache of their shared prefix, or fewer answer-prompt tokens",
    "other": "less host-side work per item (chat templates, tokenizing, the label index)",
}


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="base model the adapters are loaded onto (default: the communities' own; e.g. real-shaped random weights)")
    p.add_argument("--registry", default=None, help="community registry (default: the shipped one)")
    p.add_argument("--communities", type=positive, default=None, help="use the first N registry communities (default: all)")
    p.add_argument("--items", type=positive, default=16, help=f"items for the batched engine (at most {len(ITEMS)} distinct, repeated beyond)")
    p.add_argument("--reference-items", type=positive, default=1, help="items for the sequential reference engine")
    p.add_argument("--protocol", default="modplural", help="the protocol whose decoding and method settings are measured")
    p.add_argument("--seed", type=int, default=0, help="the run seed the per-request message seeds come from")
    p.add_argument("--message-tokens", type=positive, default=None, help="community message length (default: the protocol's, 200)")
    p.add_argument("--greedy-tokens", type=positive, default=64, help="message length of the greedy identity check")
    p.add_argument("--main-tokens", type=positive, default=None, help="Overton main-LLM response length (default: the protocol's, 200)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-size", default="auto")
    p.add_argument("--peer", choices=["llama-server"], default=None, help="also time the message workload on this engine")
    p.add_argument("--rounds", type=positive, default=2, help="time every engine this many times, in alternating order (a steady drift cancels; the rounds' spread shows the rest)")
    p.add_argument("--peer-slots", type=positive, default=None, help="llama-server's parallel slots (default: the batched engine's rows per batch)")
    p.add_argument("--plain-kernels", action="store_true", help="the batched engine without oneDNN-prepacked weights (the plain matmul kernel)")
    p.add_argument("--skip-memory", action="store_true", help="do not run the base / all-adapters peak-memory subprocesses")
    p.add_argument("--profile", action="store_true", help="also print a torch profile of batched message generation")
    p.add_argument("--out", default=None, help="also write the report (Markdown) here")
    p.add_argument("--probe", choices=["base", "adapters", "messages"], default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- workload
def protocol_of(args: argparse.Namespace) -> Protocol:
    """The measured protocol, with ``--main-tokens`` applied."""
    return resolve_protocol({"base": args.protocol, "main_tokens": args.main_tokens} if args.main_tokens else args.protocol)


def sampled_decoding(args: argparse.Namespace) -> Decoding:
    """The protocol's own message decoding (seeded; ``--message-tokens`` applied)."""
    return message_decoding(protocol_of(args), args.seed, args.message_tokens)


def queries(n: int, options: bool = True) -> list[Query]:
    """The first ``n`` benchmark items (repeated past the list), with their options or as open questions."""
    return [Query(ITEMS[i % len(ITEMS)][0], options=ITEMS[i % len(ITEMS)][1] if options else None) for i in range(n)]


def message_prompts(n: int) -> list[str]:
    """What the communities are asked in the message rows: the first ``n`` items as open (Overton) prompts."""
    return [prompts.community(q, "overton") for q in queries(n, options=False)]


def selected(args: argparse.Namespace) -> list:
    return load_registry(args.registry).select(None)[: args.communities]


def build(engine: str, args: argparse.Namespace):
    """The communities' backend (also the main LLM, with no adapter) and its pool, sampling messages as the protocol does."""
    spec = StackSpec(communities=[c.name for c in selected(args)], registry=args.registry, engine=engine, device=args.device, dtype=args.dtype,
                     batch_size=args.batch_size, cache=False, community_base=args.model, decoding=sampled_decoding(args),
                     packed_weights=not args.plain_kernels, with_main=False)
    pool = assemble(spec).pool
    return pool.backend, pool


# ----------------------------------------------------------------------------- measuring
def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable, device: str):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def measured(backend, fn: Callable, device: str):
    """``fn()``, its wall time, and how much each of ``backend.stats``'s counters grew meanwhile."""
    before = asdict(backend.stats)
    out, seconds = timed(fn, device)
    after = asdict(backend.stats)
    return out, seconds, {k: after[k] - before[k] for k in after if k not in PEAK_FIELDS}


def matmul_flops(device: str, dtype: str) -> float:
    """Dense square matmul FLOP/s on this device and dtype (best of a few runs, with the fastest kernel the batched
    engine can use: plain, or oneDNN-prepacked where it packs its weights): the physical ceiling."""
    import torch

    from modplural.backends.packed_linear import pack_linears, packing_available

    torch_dtype = getattr(torch, dtype)
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, dtype=torch_dtype)
    kernels = [lambda: a @ b]
    if packing_available(device, dtype):
        linear = torch.nn.Linear(n, n, bias=False).requires_grad_(False)
        pack_linears(linear)  # the engine's own packed layer
        kernels.append(lambda: linear(a))
    best = float("inf")
    for kernel in kernels:
        for _ in range(4):
            _, seconds = timed(lambda: [kernel() for _ in range(3)], device)
            best = min(best, seconds / 3)
    return 2 * n**3 / best


def model_flops_per_token(model) -> tuple[float, float]:
    """FLOPs per processed token in the decoder's linear layers, and per row of output logits."""
    import torch

    head = model.get_output_embeddings()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    return 2.0 * linear, 2.0 * head.weight.numel()


def peak_rss_mb() -> float:
    """This process's peak resident memory."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float | None:
    """This process's resident memory now (Linux; None elsewhere)."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), None)


def token_agreement(tokenizer, ours: list[str], reference: list[str]) -> float:
    same = total = 0
    for a, b in zip(ours, reference):
        x, y = tokenizer(a, add_special_tokens=False)["input_ids"], tokenizer(b, add_special_tokens=False)["input_ids"]
        same += sum(p == q for p, q in zip(x, y))
        total += max(len(x), len(y))
    return same / max(total, 1)


# ----------------------------------------------------------------------------- our engines
def message_row(backend, pool: CommunityPool, prompt_texts: list[str], device: str) -> dict:
    """The pool's messages for every prompt in one batched call: time, tokens, texts (after a short warm-up)."""
    warm = pool.request(pool.communities[0], "Hello")
    backend.generate([replace(warm, decoding=replace(warm.decoding, max_new_tokens=2))])  # lazy inits, allocator
    messages, seconds, grew = measured(backend, lambda: pool.messages(prompt_texts), device)
    return {"rows": len(prompt_texts) * len(pool.communities), "seconds": seconds, "generated": grew["generated_tokens"],
            "prompt_tokens": grew["prompt_tokens"], "tokens_per_s": grew["generated_tokens"] / seconds, "steps": grew.get("decode_steps", 0), "step_rows": grew.get("decode_rows", 0),
            "texts": [m[c.name] for m in messages for c in pool.communities]}


def end_to_end(backend, pool: CommunityPool, mode: str, n_items: int, args: argparse.Namespace) -> dict:
    """One mode of Modular Pluralism on ``n_items`` items, end to end: time, work per item, phases."""
    method = build_method("modular", backend, pool, protocol_of(args), args.seed)
    items = queries(n_items, options=mode == "distributional")  # Overton: an open answer
    _, seconds, grew = measured(backend, lambda: method.run(mode, items), args.device)
    reused = grew.get("reused_prompt_tokens")
    return {"items": n_items, "seconds": seconds, "items_per_s": n_items / seconds, "generated": grew["generated_tokens"] / n_items,
            "prompt": grew["prompt_tokens"] / n_items, "reused": None if reused is None else reused / n_items,
            "phases": {phase: grew[f"{phase}_seconds"] for phase in ("prefill", "decode", "scoring")},
            "cache_peak": getattr(backend.stats, "prefix_cache_peak_bytes", None)}


def run_engine(engine: str, n_items: int, args: argparse.Namespace, greedy: bool) -> dict:
    """One round on one engine: the greedy identity row (``greedy``: the first round only), the sampled message row
    (reference only: ours runs in a fresh process), and both modes end to end (prefix reuse off, then on, where the
    engine has it)."""
    backend, pool = build(engine, args)
    texts = message_prompts(n_items)
    result = {"engine": engine, "items": n_items, "kernels": getattr(backend, "kernels", "plain")}
    if greedy:
        result["greedy"] = message_row(backend, replace(pool, decoding=Decoding(max_new_tokens=args.greedy_tokens)), texts, args.device)
    if engine == "sequential":
        result["sampled"] = message_row(backend, pool, texts, args.device)
    settings = (False, True) if hasattr(backend, "prefix_reuse") else (None,)
    for mode in MODES:
        result[mode] = []
        for reuse in settings:
            if reuse is not None:
                backend.prefix_reuse = reuse
            result[mode].append({"reuse": reuse, **end_to_end(backend, pool, mode, n_items, args)})
    if args.profile and greedy and engine == "batched":
        result["profile"] = profile(pool, texts[: max(1, n_items // 4)])
    return result


def combined_rows(rows: list[dict]) -> dict:
    """Message rows of several rounds as one: times and token counts summed, rates from the sums, peaks the highest."""
    summed = ("seconds", "generated", "prompt_tokens", "steps", "step_rows")
    out = {**rows[0], **{k: sum(r[k] for r in rows) for k in summed if k in rows[0]}, "rounds": len(rows)}
    out["tokens_per_s"] = out["generated"] / out["seconds"]
    if "peak_rss_mb" in rows[0]:
        out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rows)
    return out


def combined_runs(runs: list[dict]) -> dict:
    """End-to-end runs of several rounds as one: times summed, work per item averaged, items/s from the sums."""
    seconds = sum(r["seconds"] for r in runs)
    mean = lambda key: None if runs[0][key] is None else sum(r[key] for r in runs) / len(runs)  # noqa: E731
    peaks = [r["cache_peak"] for r in runs if r["cache_peak"] is not None]
    return {"reuse": runs[0]["reuse"], "items": sum(r["items"] for r in runs), "seconds": seconds, "items_per_s": sum(r["items"] for r in runs) / seconds,
            "generated": mean("generated"), "prompt": mean("prompt"), "reused": mean("reused"),
            "phases": {phase: sum(r["phases"][phase] for r in runs) for phase in runs[0]["phases"]}, "cache_peak": max(peaks) if peaks else None}


def combined(rounds: list[dict]) -> dict:
    """One engine's rounds as one result (the greedy row and the profile come from the first round)."""
    out = dict(rounds[0])
    for key in ("sampled", "sampled_plain"):
        if key in out:
            out[key] = combined_rows([r[key] for r in rounds])
    for mode in MODES:
        out[mode] = [combined_runs([r[mode][i] for r in rounds]) for i in range(len(out[mode]))]
    return out


def profile(pool: CommunityPool, prompt_texts: list[str]) -> str:
    from torch.profiler import profile as torch_profile

    with torch_profile() as prof:
        pool.messages(prompt_texts)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def probe(args: argparse.Namespace) -> dict:
    """(Subprocess) ``messages``: the batched engine's sampled message row and its peak RSS; ``base`` / ``adapters``:
    load the base model alone or with every shipped adapter, run one small batch, report peak RSS."""
    if args.probe == "messages":
        backend, pool = build("batched", args)
        row = message_row(backend, pool, message_prompts(args.items), args.device)
        return {**{k: v for k, v in row.items() if k != "texts"}, "peak_rss_mb": peak_rss_mb()}
    communities = load_registry(args.registry).select(None)
    with_adapters = args.probe == "adapters"
    spec = StackSpec(model=None if with_adapters else args.model or communities[0].base_model, registry=args.registry, device=args.device, dtype=args.dtype,
                     batch_size=args.batch_size, cache=False, with_pool=with_adapters, community_base=args.model,
                     packed_weights=not args.plain_kernels)
    backend = assemble(spec).main
    names = [c.name for c in communities][: args.communities] if with_adapters else [None] * len(communities[: args.communities])
    backend.generate([GenerateRequest(messages=({"role": "user", "content": text},), adapter=name, decoding=Decoding(max_new_tokens=16))
                      for text in message_prompts(2) for name in names])
    return {"peak_rss_mb": peak_rss_mb(), "rss_mb": rss_mb(), "adapters": len(communities) if with_adapters else 0}


def messages_probes(argv: list[str], compare_plain: bool, round_index: int) -> dict:
    """The batched engine's sampled message row (``sampled``) in a fresh process, and with ``compare_plain`` the same
    row without prepacked weights (``sampled_plain``), the two in alternating order from round to round."""
    kinds = [("sampled", argv), ("sampled_plain", [*argv, "--plain-kernels"])][: 2 if compare_plain else 1]
    return {key: in_subprocess("messages", probe_argv) for key, probe_argv in (kinds if round_index % 2 == 0 else kinds[::-1])}


def in_subprocess(kind: str, argv: list[str]) -> dict:
    """Run ``--probe kind`` in a fresh process with the same options; its JSON answer."""
    result = subprocess.run([sys.executable, "-m", "experiments.performance.benchmark", *argv, "--probe", kind], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if result.returncode != 0:
        raise ModPluralError(f"the {kind} probe failed: {(result.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- llama-server
def rows_per_batch(args: argparse.Namespace, config, tokens: int, rows: int) -> int:
    """How many rows the batched engine decodes together on this workload (``batch_size`` or its "auto" choice)."""
    if args.batch_size != "auto":
        return min(rows, int(args.batch_size))
    from modplural.backends.batch_size import auto_rows
    import torch

    return min(rows, auto_rows(config, tokens, getattr(torch, args.dtype).itemsize, args.device))


def llama_server(args: argparse.Namespace, slots: int, slot_context: int, threads: int) -> dict | str:
    """The sampled message workload on the project's llama-server (per-request LoRA, ``slots`` parallel slots):
    tokens/s and the server's peak RSS; a one-line reason when it cannot run here."""
    from modplural.gguf_files import converted_gguf_dir
    from modplural.models import default_gguf_path
    from modplural.serving import llama_cpp

    if not llama_cpp.buildable():
        return "skipped: llama-server is not built and there is no cmake / C++ compiler here to build it"
    communities = selected(args)
    if args.model or any(c.base_model not in (None, "default") for c in communities):
        return "skipped: llama-server serves the embedded default GGUF model, and these communities run on another base"
    gguf = default_gguf_path()
    print("converting the adapters to GGUF LoRA (cached) and starting llama-server ...", file=sys.stderr)
    loras = {c.name: llama_cpp.convert_adapter(c.adapter, converted_gguf_dir(gguf)) for c in communities if c.adapter is not None}
    log = Path(tempfile.gettempdir()) / f"modplural-benchmark-llama-server-{os.getpid()}.log"
    # no prompt cache in RAM: requests carry cache_prompt false (a slot's KV may be another adapter's), so it would only cost
    process, url = llama_cpp.start_server(gguf, loras, alias="base", threads=threads, parallel=slots, context=slots * slot_context,
                                          log=log, extra=("--cache-ram", "0"))
    try:
        row = interruptible(lambda: server_message_row(url, loras, args))
        row["peak_rss_mb"] = server_peak_rss_mb(process.pid)
    finally:
        llama_cpp.stop_server(process)
    log.unlink(missing_ok=True)
    return {**row, "slots": slots, "slot_context": slot_context, "threads": threads}


def server_message_row(url: str, loras: dict, args: argparse.Namespace) -> dict:
    """The sampled message workload through the project's OpenAI-compatible client (built by ``assemble`` from a
    servers file naming the running server), prompts rendered by our tokenizer."""
    from modplural.backends.openai_compat import OpenAIBackend

    communities = selected(args)
    # the whole workload may be one long batch: no request may time out, and a retry would repeat work
    server = {"base_url": url, "model": "base", "style": "llama.cpp", "tokenizer": "default",
              "max_concurrency": args.items * len(communities), "timeout": 24 * 3600, "retries": 0}
    with tempfile.TemporaryDirectory() as tmp:
        servers = Path(tmp) / "servers.yaml"
        servers.write_text(json.dumps({"servers": {"llama": server}, "communities": {c.name: {"server": "llama"} for c in communities if c.name in loras}}))
        _, pool = assemble(StackSpec(communities=[c.name for c in communities], registry=args.registry, servers=str(servers), cache=False,
                                     decoding=sampled_decoding(args), with_main=False))
    routed = pool.backend.routes.values() if hasattr(pool.backend, "routes") else [(pool.backend, None)]
    [client] = {id(b): b for b, _ in routed if isinstance(b, OpenAIBackend)}.values()
    warm = pool.request(pool.communities[0], "Hello")
    client.generate([replace(warm, decoding=replace(warm.decoding, max_new_tokens=2))])
    before = client.generated_tokens
    _, seconds = timed(lambda: pool.messages(message_prompts(args.items)), "cpu")
    generated = client.generated_tokens - before
    return {"seconds": seconds, "generated": generated, "tokens_per_s": generated / seconds}


def interruptible(fn: Callable):
    """``fn()`` in a worker thread, so that Ctrl-C reaches the caller (and its server is stopped) at once."""
    executor = ThreadPoolExecutor(1)
    try:
        return executor.submit(fn).result()
    finally:
        executor.shutdown(wait=False)


def server_peak_rss_mb(pid: int) -> float:
    """A running process's peak resident memory (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ModPluralError(f"no VmHWM for process {pid}")


# ----------------------------------------------------------------------------- report
def machine(args: argparse.Namespace) -> str:
    import torch

    return f"{describe_machine(provenance_machine(args.device))}, torch {torch.__version__}"


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def reuse_label(reuse: bool | None) -> str:
    return {None: "", False: ", prefix reuse off", True: ", prefix reuse on"}[reuse]


def bound(run: dict, ref: dict, flops_per_token: float, ceiling: float, after_reuse: bool) -> tuple[float, float] | None:
    """(tokens through the model per item, the most any engine doing that work could beat the reference by) before
    prefix reuse (every prompt token) or after it (reused tokens left out); None where reuse was not measured."""
    if after_reuse and run["reused"] is None:
        return None
    tokens = run["prompt"] + run["generated"] - (run["reused"] if after_reuse else 0)
    return tokens, ceiling / (tokens * flops_per_token * ref["items_per_s"])


def table(ours: dict, ref: dict, mem: dict | None) -> list[str]:
    sampled, greedy = ours["sampled"], ours["greedy"]
    lines = ["| measure | batched (ours) | sequential (reference) | ratio | target |", "|---|---|---|---|---|",
             f"| community messages, sampled as the protocol does, tokens/s | {sampled['tokens_per_s']:.1f} | {ref['sampled']['tokens_per_s']:.1f} | "
             f"**{sampled['tokens_per_s'] / ref['sampled']['tokens_per_s']:.1f}x** | >= {TARGETS['messages']:g}x |",
             f"| community messages, greedy (identity check), tokens/s | {greedy['tokens_per_s']:.1f} | {ref['greedy']['tokens_per_s']:.1f} | "
             f"{greedy['tokens_per_s'] / ref['greedy']['tokens_per_s']:.1f}x | identical texts |"]
    if "sampled_plain" in ours:
        plain = ours["sampled_plain"]
        lines.append(f"| the same sampled messages, plain matmul kernel (`--plain-kernels`: no oneDNN prepacking), tokens/s | {plain['tokens_per_s']:.1f} | "
                     f"{ref['sampled']['tokens_per_s']:.1f} | {plain['tokens_per_s'] / ref['sampled']['tokens_per_s']:.1f}x | |")
    for mode, label in zip(MODES, ("distributional", "Overton")):
        target = f">= {TARGETS['distributional']:g}x" if mode == "distributional" else ""
        [reference] = ref[mode]
        for run in ours[mode]:
            ratio = run["items_per_s"] / reference["items_per_s"]
            lines.append(f"| {label} items/s, end to end{reuse_label(run['reuse'])} | {run['items_per_s']:.3f} | {reference['items_per_s']:.3f} | "
                         f"{'**' if target else ''}{ratio:.1f}x{'**' if target else ''} | {target} |")
        if len(ours[mode]) == 1:
            lines.append(f"| {label} items/s, end to end, prefix reuse on | n/a (this engine has no prefix reuse) | | | {target} |")
    if mem:
        base, full = mem["base"]["peak_rss_mb"], mem["adapters"]["peak_rss_mb"]
        lines.append(f"| peak RSS with all {mem['adapters']['adapters']} shipped adapters / base model alone (MB) | {full:.0f} | base alone: {base:.0f} | "
                     f"**{full / base:.2f}x** | <= {TARGETS['memory']:g}x |")
        if mem["base"].get("rss_mb") is not None:
            lines.append(f"| resident memory after the first batch, all {mem['adapters']['adapters']} adapters / base model alone (MB) | "
                         f"{mem['adapters']['rss_mb']:.0f} | base alone: {mem['base']['rss_mb']:.0f} | {mem['adapters']['rss_mb'] / mem['base']['rss_mb']:.2f}x | |")
    peaks = [run["cache_peak"] for mode in MODES for run in ours[mode] if run["cache_peak"] is not None]
    lines.append(f"| prefix cache, peak memory (MB) | {fmt(max(peaks) / 2**20 if peaks else None, '.1f')} | | | reported |")
    return lines


def peer_table(ours: dict, peer: dict | str, dtype: str) -> list[str]:
    if isinstance(peer, str):
        return [f"llama-server: {peer}."]
    sampled = ours["sampled"]
    return ["| same message workload | batched (ours) | llama-server | ratio | target |", "|---|---|---|---|---|",
            f"| tokens/s | {sampled['tokens_per_s']:.1f} | {peer['tokens_per_s']:.1f} | **{sampled['tokens_per_s'] / peer['tokens_per_s']:.1f}x** | "
            f">= {TARGETS['peer']:g}x |",
            f"| peak RSS (MB) | {sampled['peak_rss_mb']:.0f} | {peer['peak_rss_mb']:.0f} | {sampled['peak_rss_mb'] / peer['peak_rss_mb']:.2f}x | |",
            "",
            f"- llama-server: the project's build (`modplural/serving/llama_cpp.py`), the embedded GGUF base (its quantized weights as stored; "
            f"ours run them dequantized to {dtype}), the adapters converted to GGUF LoRA by "
            f"llama.cpp's `convert_lora_to_gguf.py` and chosen per request (`lora` field), `-np {peer['slots']}` (the batched engine's rows per batch), "
            f"`-t {peer['threads']}`, {peer['slot_context']} positions per slot, no prompt cache (`cache_prompt` false, `--cache-ram 0`); prompts "
            f"rendered by our chat template and sent to `/v1/completions` with the same temperature, top-p, top-k, seeds and token limit; tokens "
            f"counted from `usage.completion_tokens`. Time {peer['seconds']:.1f} s for {peer['generated']} tokens (ours: {sampled['seconds']:.1f} s for "
            f"{sampled['generated']})."]


def bound_lines(ours: dict, ref: dict, ceiling: float) -> list[str]:
    """Per mode: the work per item, the bound it sets before and after prefix reuse, where the time went."""
    lines = []
    per_token = ours["flops_per_token"]
    share = lambda run, b: b[0] * per_token / ceiling * run["items_per_s"]  # noqa: E731 - the share of the bound a run reaches
    for mode, label in zip(MODES, ("distributional", "Overton")):
        [reference] = ref[mode]
        first, last = ours[mode][0], ours[mode][-1]
        before, after = bound(first, reference, per_token, ceiling, False), bound(last, reference, per_token, ceiling, True)
        if after:
            work = f"{before[0]:.0f} before prefix reuse, {after[0]:.0f} after it ({last['reused']:.0f} prompt tokens reused)"
            limit = f"**{before[1]:.1f}x** before reuse and **{after[1]:.1f}x** after"
            took = (f"{1 / first['items_per_s']:.2f} s per item with reuse off ({share(first, before):.0%} of its bound), "
                    f"{1 / last['items_per_s']:.2f} s with it on ({share(last, after):.0%})")
        else:
            work = f"{before[0]:.0f} (this engine has no prefix reuse: no bound after reuse)"
            limit = f"**{before[1]:.1f}x**"
            took = f"{1 / first['items_per_s']:.2f} s per item ({share(first, before):.0%} of the bound)"
        lines.append(f"- {label}: tokens through the model per item (prompts + generated, no padding; decoder linear layers counted): {work}; "
                     f"reference {reference['prompt'] + reference['generated']:.0f}. At this machine's matmul ceiling no engine doing that work "
                     f"could beat the reference by more than {limit}; we take {took}.")
        for run in ours[mode]:
            phases = run["phases"]
            rest = run["seconds"] - sum(phases.values())
            lines.append(f"  - where the time went{reuse_label(run['reuse'])} ({run['items']} items, all rounds): prompt prefill {phases['prefill']:.1f} s, token-by-token decoding "
                         f"{phases['decode']:.1f} s, answer-distribution forward passes {phases['scoring']:.1f} s, everything else (prompts, chat "
                         f"templates, tokenizing, the label index) {rest:.1f} s, of {run['seconds']:.1f} s.")
        best = after or before
        if mode == "distributional" and best[1] < TARGETS["distributional"]:
            lines.append("  - " + below_target(last, best))
    return lines


def below_target(run: dict, best: tuple[float, float]) -> str:
    """Why the distributional target is out of reach of the measured work, and what would move it."""
    prompt = run["prompt"] - (run["reused"] or 0)
    phases = {**run["phases"], "other": run["seconds"] - sum(run["phases"].values())}
    largest = max(phases, key=phases.get)
    return (f"the bound ({best[1]:.1f}x) is below {TARGETS['distributional']:g}x, so the work itself holds the rest: per item {prompt:.0f} prompt tokens "
            f"({prompt / best[0]:.0%}) and {run['generated']:.0f} generated; the largest phase is {largest} ({phases[largest]:.1f} s of {run['seconds']:.1f} s). "
            f"What would move it: {LEVERS[largest]}.")


def per_round(rounds: dict[str, list]) -> list[dict]:
    """Each round's headline ratios (ours against the reference and the peer timed in the same round)."""
    out = []
    for i, (ours, ref) in enumerate(zip(rounds["batched"], rounds["sequential"])):
        peer = rounds["peer"][i] if i < len(rounds["peer"]) and isinstance(rounds["peer"][i], dict) else None
        out.append({"messages": ours["sampled"]["tokens_per_s"] / ref["sampled"]["tokens_per_s"],
                    "packing": ours["sampled"]["tokens_per_s"] / ours["sampled_plain"]["tokens_per_s"] if "sampled_plain" in ours else None,
                    "peer": None if peer is None else ours["sampled"]["tokens_per_s"] / peer["tokens_per_s"],
                    "distributional": ours["distributional"][-1]["items_per_s"] / ref["distributional"][0]["items_per_s"]})
    return out


def drift(ceilings: list[float], ratios: list[dict]) -> list[str]:
    """The dense matmul before and after each round, and each round's ratios: engines timed minutes apart on a shared
    machine can see different speeds; alternating their order between rounds cancels a steady drift, and the rounds'
    spread shows what is left."""
    speeds = ", ".join(f"{c / 1e9:.1f}" for c in ceilings)
    lines = [f"- Machine drift: the dense matmul ran at {speeds} GFLOP/s (start, then after each round; "
             f"{max(ceilings) / min(ceilings) - 1:+.0%} between the slowest and the fastest). Each round timed the engines in turn, in the "
             f"reverse order of the round before; the table sums the rounds' times."]
    for i, r in enumerate(ratios, 1):
        peer = "" if r["peer"] is None else f", llama-server {r['peer']:.1f}x"
        packing = "" if r["packing"] is None else f", prepacked over plain kernels {r['packing']:.2f}x"
        lines.append(f"  - round {i}: messages {r['messages']:.1f}x{peer}, distributional (reuse on) {r['distributional']:.1f}x{packing}")
    return lines


def occupancy(row: dict) -> list[str]:
    """How full the batched engine's decoding steps were on the sampled messages (finished rows leave the batch in groups)."""
    if not row.get("steps"):
        return []
    return [f"- Decoding steps of the sampled messages: {row['steps'] / row['rounds']:.0f} forward passes per round of **{row['step_rows'] / row['steps']:.1f} rows** on average, "
            f"of the {row['rows']} rows the workload started with (finished rows leave the batch once a quarter of it has finished; a row's first token comes from its prompt pass)."]


def report(args, ceiling: float, ours: dict, ref: dict, mem: dict | None, peer: dict | str | None, command: str, minutes: float) -> str:
    rows_ref = len(ref["greedy"]["texts"])
    same = sum(a == b for a, b in zip(ours["greedy"]["texts"][:rows_ref], ref["greedy"]["texts"]))
    agreement = token_agreement(ours["tokenizer"], ours["greedy"]["texts"][:rows_ref], ref["greedy"]["texts"])
    decoding = sampled_decoding(args)
    flops = lambda row: (ours["flops_per_token"] * (row["prompt_tokens"] + row["generated"]) + ours["head_flops"] * (row["generated"] + row["rows"])) / row["seconds"]  # noqa: E731
    lines = [
        "# Benchmark: the batched engine on Modular Pluralism's workload, against the original's sequential pattern and llama.cpp", "",
        f"- Command: `{command}` ({minutes:.0f} minutes on this machine)",
        f"- Machine: {machine(args)}; device `{args.device}`, dtype `{args.dtype}`, batch size `{args.batch_size}`",
        f"- Model: `{ours['model']}` with {ours['communities']} community adapters; protocol `{protocol_of(args).name}`, seed {args.seed}",
        f"- Messages: sampled as the protocol does (temperature {decoding.temperature:g}, top-p {decoding.top_p:g}, top-k {decoding.top_k}, up to "
        f"{decoding.max_new_tokens} new tokens, one seed per request from (seed, community, prompt): the same in every engine); the greedy "
        f"identity check: {args.greedy_tokens} tokens; the Overton answer: up to {protocol_of(args).main_tokens} tokens",
        f"- Items: {ours['items']} for the batched engine ({ours['sampled']['rows']} message rows), {ref['items']} for the reference ({rows_ref} rows)",
        "", *table(ours, ref, mem), "",
        f"- Greedy outputs identical on the {rows_ref} shared rows: **{same}/{rows_ref}** (token agreement {agreement:.1%}).",
        f"- Generated tokens: sampled messages, ours {ours['sampled']['generated']} in {ours['sampled']['seconds']:.1f} s "
        f"({ours['sampled']['generated'] / ours['sampled']['rows'] / ours['sampled']['rounds']:.0f} per message), reference {ref['sampled']['generated']} in "
        f"{ref['sampled']['seconds']:.1f} s ({ref['sampled']['generated'] / ref['sampled']['rows'] / ref['sampled']['rounds']:.0f} per message); "
        f"times and tokens of all {ours['sampled']['rounds']} rounds.",
        *occupancy(ours["sampled"]),
        f"- Dense {args.dtype} matmul on this machine, with the fastest kernel the batched engine can use (oneDNN-prepacked where it packs its weights): "
        f"{ceiling / 1e9:.1f} GFLOP/s (the mean of its {len(ours['ceilings'])} measurements). The batched engine ran with {ours['kernels']} kernels; its sampled message generation did "
        f"{flops(ours['sampled']) / 1e9:.1f} GFLOP/s of useful work (prompt and generated tokens through every linear layer, no padding counted) = "
        f"**{flops(ours['sampled']) / ceiling:.0%} of the ceiling**; the reference reached {flops(ref['sampled']) / ceiling:.1%}.",
        *drift(ours["ceilings"], ours["per_round"]),
        *bound_lines(ours, ref, ceiling),
    ]
    if peer is not None:
        lines += ["", "## Against llama.cpp", "", *peer_table(ours, peer, args.dtype)]
    if "profile" in ours:
        lines += ["", "Where the batched engine's time goes (torch profiler, sampled message generation):", "", "```", ours["profile"].strip(), "```"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args)))
        return 0
    started = time.perf_counter()
    command = "python -m experiments.performance.benchmark " + " ".join(argv)
    print("measuring the matmul ceiling ...", file=sys.stderr)
    ceiling = matmul_flops(args.device, args.dtype)
    mem = None if args.skip_memory else {kind: in_subprocess(kind, argv) for kind in ("base", "adapters")}
    from modplural.backends.packed_linear import packing_available
    from modplural.models import load_model

    communities = selected(args)
    loaded = load_model(args.model or communities[0].base_model, device="cpu", dtype="float32")
    per_token, head = model_flops_per_token(loaded.model)
    tokenizer, identity, config = loaded.tokenizer, loaded.identity, loaded.model.config
    del loaded
    peer_setup = None
    if args.peer:
        import torch

        tokens = longest_prompt(tokenizer, communities, args.items) + sampled_decoding(args).max_new_tokens
        slots = args.peer_slots or rows_per_batch(args, config, tokens, args.items * len(communities))
        slot_context = -(-(tokens + 8) // 256) * 256  # llama.cpp rounds each slot's context up to a multiple of 256
        peer_setup = (slots, slot_context, torch.get_num_threads())
    compare_plain = not args.plain_kernels and packing_available(args.device, args.dtype)
    rounds: dict[str, list] = {"batched": [], "sequential": [], "peer": []}
    ceilings = [ceiling]
    for r in range(args.rounds):
        order = ("batched", "sequential", "peer") if r % 2 == 0 else ("peer", "sequential", "batched")
        for engine in order:
            if engine == "peer":
                if peer_setup is not None:
                    print(f"round {r + 1}/{args.rounds}: llama-server on the message workload ...", file=sys.stderr)
                    rounds["peer"].append(llama_server(args, *peer_setup))
                continue
            n = args.items if engine == "batched" else args.reference_items
            print(f"round {r + 1}/{args.rounds}: the {engine} engine on {n} items x {len(communities)} communities ...", file=sys.stderr)
            sampled = messages_probes(argv, compare_plain, r) if engine == "batched" else {}  # fresh processes: the workload's peak memory
            rounds[engine].append({**run_engine(engine, n, args, greedy=r == 0), **sampled})
        print("measuring the matmul ceiling again (how much the machine's speed drifted) ...", file=sys.stderr)
        ceilings.append(matmul_flops(args.device, args.dtype))
    ours = combined(rounds["batched"])
    ours.update(tokenizer=tokenizer, model=identity, communities=len(communities), flops_per_token=per_token, head_flops=head, ceilings=ceilings,
                per_round=per_round(rounds))
    peer = None
    if peer_setup is not None:
        skipped = [p for p in rounds["peer"] if isinstance(p, str)]  # a round where it could not run: say why, sum nothing
        peer = skipped[0] if skipped else combined_rows(rounds["peer"])
    mean_ceiling = sum(ceilings) / len(ceilings)
    text = report(args, mean_ceiling, ours, combined(rounds["sequential"]), mem, peer, command, (time.perf_counter() - started) / 60)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def longest_prompt(tokenizer, communities, n_items: int) -> int:
    """The longest message prompt of the workload in tokens (chat template and persona included)."""
    pool = CommunityPool(None, communities)  # no backend: only its requests are used
    texts = [tokenizer.apply_chat_template(list(pool.request(c, p).messages), add_generation_prompt=True, tokenize=False)
             for c in communities for p in message_prompts(n_items)]
    return max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ModPluralError as exc:
        sys.exit(f"benchmark: error: {exc}")
