"""The main LLM's work on the VITAL workload with Qwen2.5-Coder-1.5B-Instruct: ours against the original's pattern
and against llama-server, the same prompts, one run: experiments/results/main_llm_benchmark/report.md.

1. Record (not timed): ``modular`` on ``--items`` items of each VITAL dev task (evenly spaced; protocol
   ``modplural``, seed 0; the shipped SmolLM2 communities write the messages) with our engine as the main LLM,
   which records every request it answers: steerable selections and answers, distributional answer prompts (one
   per community), Overton answers (greedy, the protocol's 200 tokens, trimmed to a sentence afterwards as a run
   does). The steerable answer depends on the selection, so the recorded prompts are those our engine's
   selections led to; every engine then answers exactly these prompts.
2. Replay each engine in a process of its own (peak memory is that process's, or the server's):
   * **ours**: the batched engine, int8 weights (``main_weight_format: auto`` on a CPU), every request of a kind
     in one call, as a run with a large chunk does;
   * **reference**: the original scripts' pattern (``engine: sequential``), float32, one prompt at a time, on the
     first ``--reference-items`` items of each task (an unbatched engine's time per item does not depend on how
     many it is given);
   * **llama-server**: the same GGUF file on the project's llama-server build, through our HTTP backend (chat
     templates rendered by our tokenizer, option probabilities from its top log-probabilities, ``--slots``
     parallel slots), all requests of a kind sent at once.

Items/s is the number of items over the summed seconds of each task's requests (per item for the reference);
a timing round runs ours, reference, llama-server, and ``--rounds 2`` repeats it in the reverse order.

    python -m experiments.performance.main_llm_benchmark --items 8 --reference-items 2     # about 40 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.performance.benchmark import server_peak_rss_mb
from experiments.performance.lean_weights_agreement import evenly_spaced

from modplural.provenance import describe_machine, machine
from modplural.assembly import StackSpec, assemble, local_backend
from modplural.backends.base import Decoding, GenerateRequest, OptionRequest
from modplural.data_paths import data_dir as default_data_dir
from modplural.errors import ModPluralError
from modplural.methods.registry import build_method
from modplural.models import QWEN_MODEL
from modplural.protocol import resolve_protocol
from modplural.serving.llama_cpp import amx_workaround
from modplural.tasks import load_task

TASKS = ("vital_overton", "vital_steerable_vk", "vital_steerable_opinionqa", "vital_distributional_moralchoice", "vital_distributional_globalopinionqa")
ENGINES = ("ours", "reference", "llama-server")
TARGETS = {"llama-server": 2.0, "memory": 2.0}  # ours over llama-server's throughput (at least); our peak memory over its (at most)


class Recording:
    """Wraps a backend: answers every request with it and records the request under the current task."""

    def __init__(self, inner) -> None:
        self.inner, self.task = inner, ""
        self.requests: list[dict] = []
        self.tokenizer = inner.tokenizer

    def generate(self, requests):
        self.requests += [{"task": self.task, "kind": "generate", **_generate_json(r)} for r in requests]
        return self.inner.generate(requests)

    def option_probs(self, requests):
        self.requests += [{"task": self.task, "kind": "options", **_option_json(r)} for r in requests]
        return self.inner.option_probs(requests)

    def adapter_identity(self, adapter):
        return self.inner.adapter_identity(adapter)


def _option_json(r: OptionRequest) -> dict:
    return {"labels": list(r.labels), "messages": list(r.messages or ()), "prompt": r.prompt, "answer_prefix": r.answer_prefix}


def _generate_json(r: GenerateRequest) -> dict:
    d = r.decoding
    return {"messages": list(r.messages or ()), "prompt": r.prompt, "max_new_tokens": d.max_new_tokens, "temperature": d.temperature,
            "top_p": d.top_p, "seed": d.seed, "top_k": d.top_k, "frequency_penalty": d.frequency_penalty, "no_repeat_ngram": d.no_repeat_ngram}


def _request(row: dict):
    messages = tuple(row["messages"]) or None
    if row["kind"] == "options":
        return OptionRequest(labels=tuple(row["labels"]), messages=messages, prompt=row["prompt"], answer_prefix=row["answer_prefix"])
    decoding = Decoding(**{k: row[k] for k in ("max_new_tokens", "temperature", "top_p", "seed", "top_k", "frequency_penalty", "no_repeat_ngram")})
    return GenerateRequest(messages=messages, prompt=row["prompt"], decoding=decoding)


PROTOCOL = {"base": "modplural", "repetition": "none"}  # an OpenAI-compatible server cannot ban repeated n-grams


def record(args: argparse.Namespace) -> list[dict]:
    """The main LLM's requests of ``modular`` on ``args.items`` items per task, tagged ``<task>#head`` (the first
    ``--reference-items`` items, which the reference answers too) or ``<task>#tail``, with each part's item count."""
    protocol = resolve_protocol(PROTOCOL)
    data = Path(args.data_dir) if args.data_dir else default_data_dir()
    spec = StackSpec(model=QWEN_MODEL, device="cpu", cache=args.cache, decoding=_message_decoding(protocol))
    main, pool = assemble(spec)
    recorder = Recording(main)
    method = build_method("modular", recorder, pool, protocol, seed=0)
    for name in TASKS:
        task, _, items, _ = load_task(name, data, protocol)
        chosen = evenly_spaced([i for i in items if i.query], args.items)
        for part, queries in (("head", chosen[: args.reference_items]), ("tail", chosen[args.reference_items :])):
            if queries:
                recorder.task = f"{name}#{part}#{len(queries)}"
                method.run(task.mode, [i.query for i in queries])
        print(f"recorded {name}: {len(chosen)} items", file=sys.stderr, flush=True)
    return recorder.requests


def _task(row: dict) -> str:
    return row["task"].split("#")[0]


def _items(rows: list[dict], task: str) -> int:
    """How many items ``rows`` hold of ``task``."""
    return sum(int(tag.split("#")[2]) for tag in {r["task"] for r in rows if _task(r) == task})


def _message_decoding(protocol):
    from modplural.assembly import message_decoding

    return message_decoding(protocol, seed=0)


def replay(engine: str, rows: list[dict], args: argparse.Namespace) -> dict:
    """Seconds per task for ``engine`` answering ``rows`` (options first, then texts, each kind in one call per task)."""
    server = None
    if engine == "llama-server":
        backend, server = _server_backend(args)
    elif engine == "ours":
        backend = local_backend(QWEN_MODEL, device="cpu", weight_format="auto")
    else:
        backend = local_backend(QWEN_MODEL, engine="sequential", device="cpu", weight_format="float")
    warm = [r for r in rows if r["kind"] == "options"][:1]
    backend.option_probs([_request(r) for r in warm])
    seconds: dict[str, float] = {}
    answers: list = []
    try:
        for task in TASKS:
            mine = [r for r in rows if _task(r) == task]
            for kind in ("options", "generate"):
                batch = [_request(r) for r in mine if r["kind"] == kind]
                if not batch:
                    continue
                start = time.perf_counter()
                out = backend.option_probs(batch) if kind == "options" else backend.generate(batch)
                seconds[task] = seconds.get(task, 0.0) + time.perf_counter() - start
                answers += [list(o.probs) if kind == "options" else o for o in out]
        peak = server_peak_rss_mb(server[0].pid) if server else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        if server:
            from modplural.serving import llama_cpp

            llama_cpp.stop_server(server[0])
    return {"seconds": seconds, "peak_rss_mb": peak, "identity": backend.adapter_identity(None), "answers": answers}


def _server_backend(args: argparse.Namespace):
    """llama-server on the 1.5B's GGUF, and our HTTP backend for it as ``assemble`` builds it from a servers file."""
    from modplural.models import qwen_gguf_path
    from modplural.serving import llama_cpp

    process, url = llama_cpp.start_server(qwen_gguf_path(), {}, alias="base", threads=args.threads, parallel=args.slots,
                                          context=args.slots * 4096, extra=("--cache-ram", "0"))
    # every request of a kind is sent at once: none may time out, and a retry would repeat work
    server = {"base_url": url, "model": "base", "style": "llama.cpp", "tokenizer": QWEN_MODEL, "max_concurrency": args.slots,
              "timeout": 24 * 3600, "retries": 0}
    with tempfile.TemporaryDirectory() as tmp:
        servers = Path(tmp) / "servers.yaml"
        servers.write_text(json.dumps({"servers": {"llama": server}, "main": "llama"}))
        main = assemble(StackSpec(servers=str(servers), with_pool=False, cache=False)).main
    return main, (process, url)


def items_per_s(seconds: dict[str, float], rows: list[dict], rounds: int) -> float:
    """Items per second over the tasks: each task's seconds per item (``seconds`` summed over ``rounds``), summed, inverted."""
    per_item = sum(s / rounds / _items(rows, task) for task, s in seconds.items())
    return len(seconds) / per_item


def report(args: argparse.Namespace, rows: list[dict], rounds: list[dict[str, dict]], minutes: float) -> str:
    sums = {e: {"seconds": {}, "peak_rss_mb": 0.0} for e in ENGINES}
    for r in rounds:
        for engine, run in r.items():
            for task, s in run["seconds"].items():
                sums[engine]["seconds"][task] = sums[engine]["seconds"].get(task, 0.0) + s
            sums[engine]["peak_rss_mb"] = max(sums[engine]["peak_rss_mb"], run["peak_rss_mb"])
            sums[engine]["identity"] = run["identity"]
    head = [r for r in rows if r["task"].split("#")[1] == "head"]
    rate = {e: items_per_s(sums[e]["seconds"], head if e == "reference" else rows, len(rounds)) for e in ENGINES if sums[e]["seconds"]}
    lines = [
        "# The main LLM on the VITAL workload: Qwen2.5-Coder-1.5B-Instruct, ours vs the original's pattern vs llama-server",
        "",
        f"- Machine: {describe_machine(machine())}; torch threads {args.threads}.",
        f"- Workload: `modular` (protocol `modplural` with `repetition: none`, which a server can run; seed 0) on {args.items} evenly spaced VITAL dev items per task "
        f"({', '.join(TASKS)}); community messages by the nine shipped SmolLM2-135M adapters (recorded once, not timed); "
        f"{len(rows)} main-LLM requests ({sum(r['kind'] == 'options' for r in rows)} option readings, "
        f"{sum(r['kind'] == 'generate' for r in rows)} texts). The reference answers the first {args.reference_items} items per task.",
        f"- Command: `python -m experiments.performance.main_llm_benchmark --items {args.items} --reference-items {args.reference_items} "
        f"--rounds {args.rounds} --slots {args.slots} --threads {args.threads}`; {minutes:.0f} minutes in all.",
        *([f"- llama-server ran with `{' '.join(amx_workaround())}` (`modplural/serving/llama_cpp.py`: its AMX weight buffers die with SIGILL on this host), "
           "so it used its plain CPU kernels, not its AMX or repacked layouts."] if amx_workaround() else []),
        "",
        "| engine | model as loaded | items/s | peak RSS MB |",
        "|---|---|---|---|",
    ]
    for e in ENGINES:
        if e in rate:
            lines.append(f"| {e} | `{sums[e]['identity']}` | {rate[e]:.4f} | {sums[e]['peak_rss_mb']:.0f} |")
    lines.append("")
    if "llama-server" in rate:
        speed, memory = rate["ours"] / rate["llama-server"], sums["ours"]["peak_rss_mb"] / sums["llama-server"]["peak_rss_mb"]
        lines += [f"- Ours over llama-server: **{speed:.2f}x** the items/s (target >= {TARGETS['llama-server']:.0f}x: "
                  f"{'met' if speed >= TARGETS['llama-server'] else 'not met'}); peak memory **{memory:.2f}x** "
                  f"(target <= {TARGETS['memory']:.0f}x: {'met' if memory <= TARGETS['memory'] else 'not met'})."]
    if "reference" in rate:
        lines.append(f"- Ours over the original's pattern: **{rate['ours'] / rate['reference']:.2f}x** the items/s.")
    lines += ["", "Seconds per task (summed over rounds):", "", "| task | " + " | ".join(e for e in ENGINES if e in rate) + " |",
              "|---|" + "---|" * len(rate)]
    for task in TASKS:
        lines.append(f"| {task} | " + " | ".join(f"{sums[e]['seconds'].get(task, 0):.1f}" for e in ENGINES if e in rate) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--items", type=int, default=8)
    p.add_argument("--reference-items", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--slots", type=int, default=8, help="llama-server's parallel slots")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default=None, help="message cache file for the recording (default: a temporary one)")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--out", type=Path, default=Path("experiments/results/main_llm_benchmark/report.md"))
    p.add_argument("--replay", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--requests", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        if args.replay:
            rows = json.loads(args.requests.read_text())
            if args.replay == "reference":
                rows = [r for r in rows if r["task"].split("#")[1] == "head"]
            args.out.write_text(json.dumps(replay(args.replay, rows, args)))
            return 0
        return _run(args)
    except ModPluralError as exc:
        print(f"main_llm_benchmark: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    start = time.time()
    engines = [e for e in args.engines.split(",") if e]
    with tempfile.TemporaryDirectory() as tmp:
        if args.cache is None:
            args.cache = str(Path(tmp) / "messages.sqlite")
        rows = record(args)
        requests = Path(tmp) / "requests.json"
        requests.write_text(json.dumps(rows))
        rounds = []
        for index in range(args.rounds):
            order = engines if index % 2 == 0 else engines[::-1]
            runs = {}
            for engine in order:
                out = Path(tmp) / f"{engine}-{index}.json"
                command = [sys.executable, "-m", "experiments.performance.main_llm_benchmark", "--replay", engine, "--requests", str(requests), "--out", str(out),
                           "--reference-items", str(args.reference_items), "--slots", str(args.slots), "--threads", str(args.threads)]
                subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[2])
                runs[engine] = json.loads(out.read_text())
                print(f"round {index + 1}: {engine} {sum(runs[engine]['seconds'].values()):.0f} s", file=sys.stderr, flush=True)
            rounds.append(runs)
    text = report(args, rows, rounds, (time.time() - start) / 60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"requests": len(rows), "rounds": [{e: {k: v for k, v in r.items() if k != "answers"}
                                                                                            for e, r in rnd.items()} for rnd in rounds]}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
