"""How far the main LLM's int8 weights move its answers from float32: experiments/results/lean_weights_agreement/report.md.

The vanilla method's main-LLM requests on real VITAL dev items are recorded once (no model answers them), then
replayed on the same model loaded twice, one after the other (never both in memory): with float32 weights (the
oneDNN-prepacked kernel) and with int8 weights (``modplural/backends/int8_weights.py``). Reported:

* option tasks (steerable ValueKaleidoscope and OpinionQA, distributional MoralChoice and GlobalOpinionQA): the
  option probabilities' largest and mean absolute difference, and how often the likeliest option agrees;
* Overton situations: greedy texts of ``--tokens`` tokens, how many are identical, and where the first differing
  token falls in the others.

    python -m experiments.performance.lean_weights_agreement --items 50          # 4 x 50 option prompts, 200 greedy texts
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from modplural.atomic_files import own_directory, write_atomic
from modplural.provenance import describe_machine, machine
from modplural.backends.base import Decoding, GenerateRequest, OptionRequest, OptionResult
from modplural.data_paths import data_dir as default_data_dir
from modplural.errors import ModPluralError
from modplural.methods.registry import build_method
from modplural.models import QWEN_MODEL
from modplural.protocol import resolve_protocol
from modplural.tasks import load_task

OPTION_TASKS = ("vital_steerable_vk", "vital_steerable_opinionqa", "vital_distributional_moralchoice", "vital_distributional_globalopinionqa")
OVERTON = "vital_overton"


class Recorder:
    """A backend that answers nothing real: it records the requests a method sends (uniform options, empty texts)."""

    def __init__(self) -> None:
        self.options: list[OptionRequest] = []
        self.generations: list[GenerateRequest] = []

    def generate(self, requests):
        self.generations.extend(requests)
        return [""] * len(requests)

    def option_probs(self, requests):
        self.options.extend(requests)
        return [OptionResult(r.labels, tuple(1 / len(r.labels) for _ in r.labels), 1.0) for r in requests]

    def adapter_identity(self, adapter):
        return "recorder"


def evenly_spaced(items: list, count: int) -> list:
    """``count`` items spread evenly through ``items`` (all of them if there are fewer)."""
    if count >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)] if count > 1 else items[:1]


def record(data_dir: Path, items: int, overton_items: int, tokens: int) -> tuple[list[tuple[str, OptionRequest]], list[GenerateRequest]]:
    """The vanilla method's option requests per option task, and its Overton prompts as greedy ``tokens``-token requests."""
    protocol = resolve_protocol("modplural")
    options: list[tuple[str, OptionRequest]] = []
    for name in OPTION_TASKS:
        task, _, loaded, _ = load_task(name, data_dir, protocol)
        recorder = Recorder()
        build_method("vanilla", recorder, None, protocol).run(task.mode, [i.query for i in evenly_spaced([i for i in loaded if i.query], items)])
        options += [(name, r) for r in recorder.options]
    task, _, loaded, _ = load_task(OVERTON, data_dir, protocol)
    recorder = Recorder()
    build_method("vanilla", recorder, None, protocol).run(task.mode, [i.query for i in evenly_spaced([i for i in loaded if i.query], overton_items)])
    greedy = Decoding(max_new_tokens=tokens)
    return options, [replace(r, decoding=greedy) for r in recorder.generations]


def replay(model: str, weight_format: str, options: list[OptionRequest], generations: list[GenerateRequest], batch_size: int | str) -> dict:
    """Answer the recorded requests on ``model`` with the given weights; the answers, timings and peak memory."""
    import resource

    from modplural.assembly import local_backend
    from modplural.int8_cache import int8_dir
    from modplural.models import model_source

    source = model_source(model)
    built = weight_format == "int8" and not int8_dir(source.gguf or Path(source.location)).exists()
    start = time.perf_counter()
    backend = local_backend(model, device="cpu", dtype="float32", batch_size=batch_size, weight_format=weight_format)
    loaded = time.perf_counter()
    probs = [list(r.probs) for r in backend.option_probs(options)]
    scored = time.perf_counter()
    texts = backend.generate(generations)
    generated = time.perf_counter()
    ids = [backend.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    out = {"identity": backend.adapter_identity(None), "kernels": backend.kernels, "probs": probs, "texts": texts, "token_ids": ids,
           "load_s": loaded - start, "cache_built": built, "scoring_s": scored - loaded, "generation_s": generated - scored,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    del backend
    return out


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The index of the first differing token, None if the sequences are equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def summarize(tasks: list[str], float_run: dict, int8_run: dict) -> dict:
    per_task = {}
    for name in dict.fromkeys(tasks):
        rows = [i for i, t in enumerate(tasks) if t == name]
        diffs = np.concatenate([np.abs(np.array(float_run["probs"][i]) - np.array(int8_run["probs"][i])) for i in rows])
        same_top = sum(int(np.argmax(float_run["probs"][i]) == np.argmax(int8_run["probs"][i])) for i in rows)
        per_task[name] = {"prompts": len(rows), "max_abs": float(diffs.max()), "mean_abs": float(diffs.mean()), "same_argmax": same_top}
    every = np.concatenate([np.abs(np.array(a) - np.array(b)) for a, b in zip(float_run["probs"], int8_run["probs"])])
    firsts = [first_difference(a, b) for a, b in zip(float_run["token_ids"], int8_run["token_ids"])]
    differing = sorted(f for f in firsts if f is not None)
    return {"per_task": per_task, "option_prompts": len(tasks), "max_abs": float(every.max()), "mean_abs": float(every.mean()),
            "same_argmax": sum(v["same_argmax"] for v in per_task.values()),
            "texts": len(firsts), "identical_texts": sum(f is None for f in firsts),
            "first_difference_median": float(np.median(differing)) if differing else None}


def report(args: argparse.Namespace, summary: dict, runs: dict[str, dict]) -> str:
    cpu = describe_machine(machine())
    lines = [
        "# int8 weights vs float32: agreement of the main LLM's answers",
        "",
        f"Model: {runs['float']['identity']} (float32, oneDNN-prepacked) vs {runs['int8']['identity']}. Split: VITAL dev "
        f"(`../shared/data/vital`), items evenly spaced through each file; prompts: the vanilla method's main-LLM requests "
        f"under protocol `modplural`; no scorer (the two runs are compared with each other). Machine: {cpu}; "
        f"torch threads {args.threads}. Command: `python -m experiments.performance.lean_weights_agreement --items {args.items} "
        f"--overton-items {args.overton_items} --tokens {args.tokens}`.",
        "",
        "| option task | prompts | max abs diff | mean abs diff | same likeliest option |",
        "|---|---|---|---|---|",
    ]
    for name, row in summary["per_task"].items():
        lines.append(f"| {name} | {row['prompts']} | {row['max_abs']:.4f} | {row['mean_abs']:.4f} | {row['same_argmax']}/{row['prompts']} |")
    lines.append(f"| **all** | {summary['option_prompts']} | {summary['max_abs']:.4f} | {summary['mean_abs']:.4f} | "
                 f"{summary['same_argmax']}/{summary['option_prompts']} |")
    first = summary["first_difference_median"]
    lines += [
        "",
        f"Greedy {args.tokens}-token texts on {summary['texts']} Overton situations: **{summary['identical_texts']}/{summary['texts']} "
        f"identical**" + (f"; in the others the first differing token is at position {first:.0f} (median)." if first is not None else "."),
        "",
        "| weights | load s | option scoring s | greedy generation s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(f"| {name} ({run['kernels']}) | {run['load_s']:.1f} | {run['scoring_s']:.1f} | {run['generation_s']:.1f} | {run['peak_rss_mb']:.0f} |")
    built = [name for name, run in runs.items() if run.get("cache_built")]
    lines += ["", "Peak RSS is each replay process's own (each weight format ran in a process of its own). The float32 process's peak"
              " includes prepacking, which holds the mapped file and the packed copy at once while loading."
              + (f" The {', '.join(built)} process built its int8 cache first (quantizing from the GGUF: its load time and peak include"
                 " that one-time step)." if built else "")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="data root (default: MODPLURAL_DATA or ../shared/data)")
    p.add_argument("--model", default=QWEN_MODEL)
    p.add_argument("--items", type=int, default=50, help="items per option task")
    p.add_argument("--overton-items", type=int, default=200, help="Overton situations for greedy texts")
    p.add_argument("--tokens", type=int, default=64, help="greedy tokens per text")
    p.add_argument("--batch-size", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--replay", choices=("float", "int8"), help=argparse.SUPPRESS)  # internal: one replay in this process
    p.add_argument("--requests", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path("experiments/results/lean_weights_agreement/report.md"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        if args.replay:
            return _replay_process(args)
        return _run(args)
    except ModPluralError as exc:
        print(f"lean_weights_agreement: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import subprocess
    import tempfile

    data = Path(args.data_dir) if args.data_dir else default_data_dir()
    options, generations = record(data, args.items, args.overton_items, args.tokens)
    print(f"recorded {len(options)} option prompts and {len(generations)} greedy prompts", flush=True)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        requests = Path(tmp) / "requests.json"
        requests.write_text(json.dumps({"options": [_option_json(r) for _, r in options], "generations": [_generate_json(r) for r in generations]}))
        for weight_format in ("float", "int8"):  # one process each: never two copies of the model in memory
            result = Path(tmp) / f"{weight_format}.json"
            command = [sys.executable, "-m", "experiments.performance.lean_weights_agreement", "--replay", weight_format, "--requests", str(requests), "--out", str(result),
                       "--model", args.model, "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
            subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[2])
            runs[weight_format] = json.loads(result.read_text())
            print(f"{weight_format}: scoring {runs[weight_format]['scoring_s']:.0f} s, generation {runs[weight_format]['generation_s']:.0f} s", flush=True)
    summary = summarize([t for t, _ in options], runs["float"], runs["int8"])
    own_directory(args.out.parent)
    write_atomic(args.out, report(args, summary, runs))
    # numbers only: the texts are not kept (model outputs may quote VITAL's situations, which are never committed)
    write_atomic(args.out.with_suffix(".json"), json.dumps({"summary": summary, **{k: {x: y for x, y in v.items() if x not in ("token_ids", "texts")}
                                                                                 for k, v in runs.items()}}, indent=1))
    print(args.out.read_text())
    return 0


def _option_json(r: OptionRequest) -> dict:
    return {"labels": list(r.labels), "messages": list(r.messages) if r.messages else None, "prompt": r.prompt, "answer_prefix": r.answer_prefix}


def _generate_json(r: GenerateRequest) -> dict:
    return {"messages": list(r.messages) if r.messages else None, "prompt": r.prompt, "max_new_tokens": r.decoding.max_new_tokens}


def _replay_process(args: argparse.Namespace) -> int:
    data = json.loads(args.requests.read_text())
    options = [OptionRequest(labels=tuple(o["labels"]), messages=tuple(o["messages"]) if o["messages"] else None, prompt=o["prompt"],
                             answer_prefix=o["answer_prefix"]) for o in data["options"]]
    generations = [GenerateRequest(messages=tuple(g["messages"]) if g["messages"] else None, prompt=g["prompt"],
                                   decoding=Decoding(max_new_tokens=g["max_new_tokens"])) for g in data["generations"]]
    batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    args.out.write_text(json.dumps(replay(args.model, args.replay, options, generations, batch_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
