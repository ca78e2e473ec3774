"""``modplural communities list | check | eval | cards``: the registry, its adapters, how distinct they are, their model cards."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modplural.cli import options
from modplural.communities import Community
from modplural.errors import ModPluralError
from modplural.text import terminal_safe


def register(sub: argparse._SubParsersAction) -> None:
    communities = sub.add_parser("communities", help="the community registry").add_subparsers(dest="communities_command", required=True)
    listing = communities.add_parser("list", help="print the registry as a table")
    listing.add_argument("--registry", default=None, help="registry YAML (default: MODPLURAL_REGISTRY or the shipped one)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=list_registry)
    check = communities.add_parser("check", help="load every community adapter onto its base model (persona-only communities run on it)")
    options.add_registry(check)
    options.add_device(check)
    check.set_defaults(func=check_adapters)
    evaluate = communities.add_parser("eval", help="held-out perplexity of every adapter on every community's validation text, and their stances")
    options.add_registry(evaluate)
    evaluate.add_argument("--corpus-dir", default="build/corpora")
    evaluate.add_argument("--max-blocks", type=options.positive_int, default=32)
    evaluate.add_argument("--seq-len", type=options.positive_int, default=128)
    evaluate.add_argument("--batch-size", type=options.positive_int, default=16)
    evaluate.add_argument("--out", default=None, help="output directory (default: next to the adapters)")
    evaluate.add_argument("--stances", action=argparse.BooleanOptionalAction, default=True,
                          help="also ask every adapter, and the base model persona-prompted with each description, the contested questions")
    evaluate.add_argument("--questions", default=None, help="stance question file (default: the shipped modplural/adapters/stance_questions.yaml)")
    options.add_device(evaluate)
    evaluate.set_defaults(func=evaluate_distinctness)
    cards = communities.add_parser("cards", help="regenerate each adapter's model card (README.md) from the files on disk")
    options.add_registry(cards)
    cards.set_defaults(func=write_model_cards)


def _local_pool(args: argparse.Namespace, batch_size: int | str = "auto"):
    """The selected communities' adapters on their base model (no servers, no message cache)."""
    from modplural.assembly import StackSpec, assemble

    spec = StackSpec(communities=options.names(args.communities), registry=args.registry, device=args.device, dtype=args.dtype, batch_size=batch_size, cache=False,
                     with_main=False)
    return assemble(spec).pool


def list_registry(args: argparse.Namespace) -> int:
    from modplural.communities import load_registry

    registry = load_registry(args.registry)
    rows = [
        {"name": c.name, "axis": c.axis, "weight": c.weight, "adapter": "present" if c.adapter_present else "missing" if c.adapter else "none",
         "persona": "yes" if c.persona else "no", "licence": c.corpus.licence if c.corpus else "-", "description": c.description}
        for c in registry.communities
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no communities in {registry.path}")
    else:
        print(terminal_safe(table(rows)))
    return 0


def check_adapters(args: argparse.Namespace) -> int:
    pool = _local_pool(args)
    for name in pool.names:
        print(f"ok  {name}  {pool.identity(name)}")
    adapters = sum(c.adapter is not None for c in pool.communities)
    print(f"{adapters} adapters load on {pool.backend.adapter_identity(None)}; {len(pool.names) - adapters} persona-only communities run on it")
    return 0


def _with_adapters(communities: list[Community], purpose: str) -> list[Community]:
    """The communities that have an adapter; one note line on stderr per persona-only one left out."""
    for c in communities:
        if c.adapter is None:
            print(f"modplural: note: {c.name} is persona-only (no adapter): no {purpose}", file=sys.stderr)
    return [c for c in communities if c.adapter is not None]


def evaluate_distinctness(args: argparse.Namespace) -> int:
    from modplural.adapters.distinctness import SPREAD, block_losses, write_report
    from modplural.adapters.model_card import DIGESTS, adapter_digest, write_cards
    from modplural.adapters.stance_questions import load_questions

    questions = load_questions(args.questions) if args.stances else None
    pool = _local_pool(args, args.batch_size)
    communities = _with_adapters(pool.communities, "distinctness or model card")
    if len(communities) < 2:
        raise ModPluralError("distinctness needs at least two communities with adapters")
    losses = block_losses(pool.backend, communities, Path(args.corpus_dir), max_blocks=args.max_blocks, seq_len=args.seq_len)
    out = Path(args.out) if args.out else communities[0].adapter.parent
    command = f"modplural communities eval --max-blocks {args.max_blocks} --seq-len {args.seq_len}"
    command += " --no-stances" if questions is None else f" --questions {args.questions}" if args.questions else ""
    header = (f"# Distinctness of community adapters\n\nBase model: {pool.backend.adapter_identity(None)}. Validation split of `{args.corpus_dir}`, "
              f"{args.max_blocks} blocks of {args.seq_len} tokens per community, evenly spaced through its validation text. Command: `{command}`.")
    settings = {"base_model": pool.backend.adapter_identity(None), "corpus_dir": args.corpus_dir, "max_blocks": args.max_blocks,
                "seq_len": args.seq_len, "blocks": SPREAD, DIGESTS: {c.name: adapter_digest(c.adapter) for c in communities}}
    from modplural.adapters.stance_report import HEATMAP, stance_heatmap, stance_json, stance_markdown

    if questions is None:
        result = write_report(losses, out, header, settings)
        (out / HEATMAP).unlink(missing_ok=True)  # an older run's stances would not match this report
    else:
        from modplural.adapters.stances import measure_stances, summarise

        stances = measure_stances(pool.backend, communities, questions)
        summary = summarise(stances)
        result = write_report(losses, out, header, settings, stance_markdown(stances, summary), {"stances": stance_json(stances, summary)})
        stance_heatmap(stances, out / HEATMAP)
    print((out / "distinctness.md").read_text())
    print(f"own adapter best on {result['own_is_best']}/{result['total']} ({result['own_is_clearly_best']} with the 95% interval below zero); wrote {out}/distinctness.{{md,json,png}}"
          + ("" if questions is None else f" and {out / HEATMAP}"))
    written, errors = write_cards(communities, out)
    _report_cards(written, errors, "note")
    return 0


def write_model_cards(args: argparse.Namespace) -> int:
    from modplural.communities import load_registry
    from modplural.adapters.model_card import write_cards

    written, errors = write_cards(_with_adapters(load_registry(args.registry).select(options.names(args.communities)), "model card"))
    _report_cards(written, errors, "error")
    return 2 if errors else 0


def _report_cards(written: list[Path], errors: list[str], level: str) -> None:
    """One line per card written, one ``modplural: <level>:`` line on stderr per card that could not be."""
    for path in written:
        print(f"wrote {path}")
    for error in errors:
        print(f"modplural: {level}: no model card for {error}", file=sys.stderr)


def table(rows: list[dict]) -> str:
    """Rows of equal keys as an aligned plain-text table."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([line, rule, *body])
