"""The ``modplural`` command line: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from modplural.errors import ModPluralError
from modplural.validation import check_count, check_weights


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="model spec: 'default', a hub id, a directory or a .gguf file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")


def _cmd_model_prepare(args: argparse.Namespace) -> int:
    from modplural.models import load_model

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    print(f"{loaded.identity} ready on {loaded.device} ({loaded.dtype})")
    return 0


def _cmd_communities_list(args: argparse.Namespace) -> int:
    from modplural.communities import load_registry

    registry = load_registry(args.registry)
    rows = [
        {
            "name": c.name,
            "axis": c.axis,
            "weight": c.weight,
            "adapter": "present" if c.adapter_present else "missing",
            "licence": c.corpus.licence,
            "description": c.description,
        }
        for c in registry.communities
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no communities in {registry.path}")
        return 0
    print(_table(rows))
    return 0


def _cmd_communities_check(args: argparse.Namespace) -> int:
    from modplural.communities import load_registry
    from modplural.pool import local_backend_for

    registry = load_registry(args.registry)
    communities = registry.select(args.communities.split(",") if args.communities else None)
    backend = local_backend_for(communities, device=args.device, dtype=args.dtype)
    for name in backend.adapters:
        print(f"ok  {name}  {backend.adapter_identity(name)}")
    print(f"{len(backend.adapters)} adapters load on {backend.loaded.identity}")
    return 0


def _cmd_corpus_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modplural.data_paths import data_dir
    from modplural.training.corpora import build_corpora, summary_table

    raw = Path(args.raw_dir) if args.raw_dir else data_dir(args.data_dir) / "corpora_raw"
    count = None
    if not args.no_tokens:
        from modplural.models import load_model

        tokenizer = load_model(args.tokenizer, device="cpu").tokenizer
        count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    communities = args.communities.split(",") if args.communities else None
    summary = build_corpora(raw, Path(args.out), communities, valid_fraction=args.valid_fraction, count_tokens=count)
    print(summary_table(summary))
    print(f"wrote {len(summary)} corpora to {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modplural.training.config import all_community_configs, community_config_path, load_train_config
    from modplural.training.lora import train

    config_dir = Path(args.config_dir)
    if args.all == bool(args.community):
        raise ModPluralError("give --community NAME or --all")
    paths = all_community_configs(config_dir) if args.all else [community_config_path(args.community, config_dir)]
    overrides = {"max_steps": args.max_steps, "corpus_dir": args.corpus_dir, "output_dir": args.output_dir, "device": args.device}
    configs = [load_train_config(p, **overrides) for p in paths]  # validate every config before training any
    for config in configs:
        if args.skip_finished and (config.adapter_dir / "training_manifest.json").is_file():
            print(f"{config.community}: finished adapter at {config.adapter_dir}, skipped")
            continue
        print(f"{config.community}: adapter at {train(config, restart=args.restart)}")
    return 0


def _cmd_communities_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modplural.communities import load_registry
    from modplural.pool import local_backend_for
    from modplural.training.distinctness import perplexity_matrix, write_report

    registry = load_registry(args.registry)
    communities = registry.select(args.communities.split(",") if args.communities else None)
    if len(communities) < 2:
        raise ModPluralError("distinctness needs at least two communities")
    backend = local_backend_for(communities, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    matrix = perplexity_matrix(backend, communities, Path(args.corpus_dir), max_blocks=args.max_blocks, seq_len=args.seq_len)
    out = Path(args.out) if args.out else communities[0].adapter.parent
    header = (f"# Distinctness of community adapters\n\nBase model: {backend.loaded.identity}. Validation split of `{args.corpus_dir}`, "
              f"first {args.max_blocks} blocks of {args.seq_len} tokens per community. Command: `modplural communities eval "
              f"--max-blocks {args.max_blocks} --seq-len {args.seq_len}`.")
    result = write_report(matrix, out, header)
    print((out / "distinctness.md").read_text())
    print(f"own adapter best on {result['own_is_best']}/{result['total']}; wrote {out}/distinctness.{{md,json,png}}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modplural.data_paths import data_dir
    from modplural.runner import Experiment, load_config

    config = load_config(Path(args.config), limit=args.limit, engine=args.engine, protocol=args.protocol)
    out = Path(args.out) if args.out else Path("runs") / (config.name + (f"_{args.protocol}" if args.protocol else ""))
    experiment = Experiment(config, data_dir(args.data_dir), out)
    metrics = experiment.run(progress=not args.no_progress)
    _print_metrics(metrics)
    print(f"predictions, manifest and metrics in {out}; `modplural report {out}` writes the report")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modplural.data_paths import data_dir
    from modplural.runner import Experiment

    experiment = Experiment.from_run_dir(Path(args.run_dir), data_dir(args.data_dir))
    metrics = experiment.score(args.scorer, args.nli_model)
    _print_metrics(metrics)
    suffix = "" if args.scorer in (None, experiment.config.scorer) else f".{args.scorer}"
    print(f"wrote {Path(args.run_dir) / f'metrics{suffix}.json'} (protocol {metrics['protocol']})")
    return 0


def _print_metrics(metrics: dict) -> None:
    for task, per_method in metrics["tasks"].items():
        for method, values in per_method.items():
            shown = ", ".join(f"{k} {v['value']:.3f}" for k, v in values.items() if isinstance(v, dict) and "ci95" in v)
            print(f"{task:<40} {method:<10} {shown}")


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modplural.report import write_report

    print(f"wrote {write_report(Path(args.run_dir))}")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modplural.data_download import VITAL_BASE_URL, download_vital

    if args.dataset != "vital":
        raise ModPluralError(f"unknown dataset {args.dataset!r}: only 'vital' can be downloaded")
    for line in download_vital(Path(args.data_dir), args.base_url or VITAL_BASE_URL, args.timeout):
        print(line)
    return 0


def _table(rows: list[dict]) -> str:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([line, rule, *body])


MODE_NAMES = {"overton": "overton", "steerable": "steer", "distributional": "distribution"}


def _parse_weights(text: str | None):
    if text is None or text in ("uniform", "registry"):
        return text
    try:
        values = tuple(float(w) for w in text.split(","))
    except ValueError as exc:
        raise ModPluralError(f"--weights must be 'uniform', 'registry' or comma-separated numbers, got {text!r}") from exc
    return check_weights(values, "--weights")


def _cmd_ask(args: argparse.Namespace) -> int:
    from modplural.backends.engines import local_backend
    from modplural.message_cache import MessageCache
    from modplural.methods import NEEDS_POOL, build_method
    from modplural.pool import MESSAGE_DECODING, CommunityPool
    from modplural.protocol import resolve_protocol
    from modplural.servers import load_servers
    from modplural.types import Query

    mode = MODE_NAMES[args.mode]
    for option, value in (("--max-new-tokens", args.max_new_tokens), ("--message-tokens", args.message_tokens)):
        if value is not None:
            check_count(value, option)
    query = Query(args.question, options=tuple(args.option) if args.option else None, attribute=args.attribute, persona=args.persona, weights=_parse_weights(args.weights))
    if mode == "steer" and query.attribute is None:
        raise ModPluralError("--mode steerable needs --attribute (e.g. --attribute 'the value of autonomy')")
    if mode == "distribution" and query.options is None:
        raise ModPluralError("--mode distributional needs at least two --option values")
    protocol = resolve_protocol(args.protocol)
    if args.max_new_tokens is not None:
        protocol = resolve_protocol({"base": protocol, "main_tokens": args.max_new_tokens, "steer_tokens": args.max_new_tokens})
    servers = load_servers(args.servers) if args.servers else None
    pool = None
    if args.method in NEEDS_POOL:
        from dataclasses import replace

        decoding = replace(MESSAGE_DECODING, max_new_tokens=args.message_tokens or protocol.message_tokens, seed=args.seed)
        cache = None if args.no_cache else MessageCache(args.cache)
        names = args.communities.split(",") if args.communities else None
        pool = CommunityPool.from_registry(names, args.registry, device=args.device, dtype=args.dtype, batch_size=args.batch_size, decoding=decoding, cache=cache,
                                           engine=args.engine, servers=servers)
    if servers is not None and servers.main is not None and args.model is None:
        main = servers.backend(servers.main)
    elif pool is not None and args.model is None:
        main = pool.backend
    else:
        main = local_backend(args.model or "default", engine=args.engine, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    method = build_method(args.method, main, pool, protocol, args.seed)
    [result] = method.run(mode, [query])
    if args.json:
        payload = result.to_dict()
        payload["main_model"] = main.adapter_identity(None)
        print(json.dumps(payload, indent=2))
    else:
        print(_render(result, main.adapter_identity(None)))
    return 0


def _render(result, main_identity: str) -> str:
    """A readable account: the community messages, the selection, then the answer."""
    lines = [f"mode: {result.mode}   method: {result.method}   main LLM: {main_identity}", ""]
    if result.community_messages:
        lines.append("Community messages")
        for name, text in result.community_messages.items():
            lines.append(f"  [{name}] {' '.join(text.split())}")
        lines.append("")
    if result.selection_scores:
        mass = f", probability mass on the numbers: {result.selection_mass:.2f}" if result.selection_mass is not None else ""
        lines.append(f"Selection (chosen: {result.chosen_community}{mass})")
        lines += [f"  {name:<24} {score:.3f}" for name, score in result.selection_scores.items()]
        lines.append("")
    elif result.selection_text is not None:
        lines += [f"Selection (chosen: {result.chosen_community}, read from the sampled answer {' '.join(result.selection_text.split())!r})", ""]
    if result.distribution is not None:
        lines.append("Answer distribution" + (f" (probability mass on the option labels: {result.option_mass:.2f})" if result.option_mass is not None else ""))
        for option, p in zip(result.options, result.distribution):
            lines.append(f"  {p:6.1%} {'#' * round(p * 40):<40} {option}")
    else:
        lines += ["Answer", result.response or ""]
    return "\n".join(lines)


def _config_dir():
    from modplural.training.config import CONFIG_DIR

    return CONFIG_DIR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modplural", description="Pluralistic alignment in health through multi-LLM collaboration.")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="answer a health question pluralistically")
    ask.add_argument("question")
    ask.add_argument("--mode", choices=list(MODE_NAMES), default="overton")
    ask.add_argument("--method", choices=["modular", "vanilla", "prompting", "moe"], default="modular")
    ask.add_argument("--attribute", default=None, help="steerable: what to reflect, e.g. 'the value of autonomy'")
    ask.add_argument("--option", action="append", default=None, help="an answer option (repeat; distributional or steerable)")
    ask.add_argument("--persona", default=None, help="a framing sentence, e.g. 'You are from the country of Kenya.'")
    ask.add_argument("--weights", default=None, help="distributional: 'uniform' (default), 'registry' or one number per community")
    ask.add_argument("--communities", default=None, help="comma-separated subset of the registry (default: all)")
    ask.add_argument("--registry", default=None, help="registry YAML (default: MODPLURAL_REGISTRY or the shipped one)")
    ask.add_argument("--model", default=None, help="main LLM spec (default: the communities' base model, shared in memory)")
    ask.add_argument("--device", default="auto")
    ask.add_argument("--dtype", default="auto")
    ask.add_argument("--batch-size", default="auto", help="rows decoded together, or 'auto' (from free memory)")
    ask.add_argument("--servers", default=None, help="servers YAML: communities and/or the main LLM on OpenAI-compatible servers")
    ask.add_argument("--engine", choices=["batched", "sequential"], default="batched", help="sequential: the original's one-prompt-at-a-time pattern (slow; for comparison)")
    ask.add_argument("--protocol", default="modplural", help="modplural (default) or original: the released scripts' prompts, reading and decoding; original sends the question as written, so list the options in it and end it with 'Answer:' as the datasets do")
    ask.add_argument("--max-new-tokens", type=int, default=None, help="main LLM response length (default: the protocol's, 200)")
    ask.add_argument("--message-tokens", type=int, default=None, help="community message length (default: the protocol's, 200)")
    ask.add_argument("--seed", type=int, default=0, help="seed of the sampled community messages")
    ask.add_argument("--no-cache", action="store_true", help="do not read or write the community-message cache")
    ask.add_argument("--cache", default=None, help="message cache file (default: $MODPLURAL_CACHE/messages.sqlite)")
    ask.add_argument("--json", action="store_true", help="print JSON instead of text")
    ask.set_defaults(func=_cmd_ask)

    model = sub.add_parser("model", help="model utilities").add_subparsers(dest="model_command", required=True)
    prepare = model.add_parser("prepare", help="load a model once (converts and caches GGUF files)")
    _add_model_args(prepare)
    prepare.set_defaults(func=_cmd_model_prepare)

    corpus = sub.add_parser("corpus", help="training corpora").add_subparsers(dest="corpus_command", required=True)
    build = corpus.add_parser("build", help="build one JSONL corpus per community from the raw public corpora")
    build.add_argument("--data-dir", default=None, help="data root holding corpora_raw/ (default: MODPLURAL_DATA or ../shared/data)")
    build.add_argument("--raw-dir", default=None, help="the raw corpora directory itself")
    build.add_argument("--out", default="build/corpora")
    build.add_argument("--communities", default=None, help="comma-separated subset")
    build.add_argument("--valid-fraction", type=float, default=0.1)
    build.add_argument("--tokenizer", default="default", help="model spec whose tokenizer counts tokens")
    build.add_argument("--no-tokens", action="store_true", help="count words instead of tokens")
    build.set_defaults(func=_cmd_corpus_build)

    trainer = sub.add_parser("train", help="train community LoRA adapters from training/configs")
    trainer.add_argument("--community", default=None)
    trainer.add_argument("--all", action="store_true")
    trainer.add_argument("--config-dir", default=str(_config_dir()))
    trainer.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    trainer.add_argument("--corpus-dir", default=None)
    trainer.add_argument("--output-dir", default=None, help="override output_dir (may contain {community})")
    trainer.add_argument("--device", default=None)
    trainer.add_argument("--restart", action="store_true", help="discard an interrupted run's checkpoint")
    trainer.add_argument("--skip-finished", action="store_true", help="with --all: leave finished adapters alone")
    trainer.set_defaults(func=_cmd_train)

    runner = sub.add_parser("run", help="run an experiment config (resumable)")
    runner.add_argument("config", help="experiment YAML (see experiments/configs/)")
    runner.add_argument("--data-dir", default=None, help="data root (default: MODPLURAL_DATA or ../shared/data)")
    runner.add_argument("--limit", type=int, default=None, help="items per task (overrides the config)")
    runner.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    runner.add_argument("--engine", choices=["batched", "sequential"], default=None, help="override the config's engine")
    runner.add_argument("--protocol", default=None, help="original or modplural (overrides the config's protocol)")
    runner.add_argument("--no-progress", action="store_true")
    runner.set_defaults(func=_cmd_run)

    scorer = sub.add_parser("score", help="recompute metrics of a finished run from its stored predictions (no generator loaded)")
    scorer.add_argument("run_dir")
    scorer.add_argument("--scorer", choices=["embedding", "nli"], default=None, help="Overton scorer (default: the run's); another one writes metrics.<scorer>.json")
    scorer.add_argument("--nli-model", default=None, help="with --scorer nli: an MNLI model id or path")
    scorer.add_argument("--data-dir", default=None, help="data root the run used (default: MODPLURAL_DATA or ../shared/data)")
    scorer.set_defaults(func=_cmd_score)

    report = sub.add_parser("report", help="write report.md and plots for a run directory")
    report.add_argument("run_dir")
    report.set_defaults(func=_cmd_report)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    download = data.add_parser("download", help="download a public dataset (needs internet)")
    download.add_argument("dataset", help="vital")
    download.add_argument("--data-dir", default="data", help="where to put it (files go to DATA_DIR/vital/)")
    download.add_argument("--base-url", default=None)
    download.add_argument("--timeout", type=float, default=30)
    download.set_defaults(func=_cmd_data_download)

    communities = sub.add_parser("communities", help="the community registry").add_subparsers(dest="communities_command", required=True)
    listing = communities.add_parser("list", help="print the registry as a table")
    listing.add_argument("--registry", default=None, help="registry YAML (default: MODPLURAL_REGISTRY or the shipped one)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_cmd_communities_list)
    check = communities.add_parser("check", help="load every community adapter onto its base model")
    check.add_argument("--registry", default=None, help="registry YAML (default: MODPLURAL_REGISTRY or the shipped one)")
    check.add_argument("--communities", default=None, help="comma-separated subset")
    check.add_argument("--device", default="auto")
    check.add_argument("--dtype", default="auto")
    check.set_defaults(func=_cmd_communities_check)
    evaluate = communities.add_parser("eval", help="held-out perplexity of every adapter on every community's validation text")
    evaluate.add_argument("--registry", default=None)
    evaluate.add_argument("--communities", default=None, help="comma-separated subset")
    evaluate.add_argument("--corpus-dir", default="build/corpora")
    evaluate.add_argument("--max-blocks", type=int, default=32)
    evaluate.add_argument("--seq-len", type=int, default=128)
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--out", default=None, help="output directory (default: next to the adapters)")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--dtype", default="auto")
    evaluate.set_defaults(func=_cmd_communities_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user-facing errors become one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModPluralError as exc:
        print(f"modplural: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modplural: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
