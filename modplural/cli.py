"""The ``modplural`` command line: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from modplural.errors import ModPluralError


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


def _table(rows: list[dict]) -> str:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([line, rule, *body])


def _cmd_ask(args: argparse.Namespace) -> int:
    from modplural.backends import Decoding, GenerateRequest
    from modplural.backends.local import LocalBackend

    if not args.question.strip():
        raise ModPluralError("the question is empty")
    backend = LocalBackend(args.model, device=args.device, dtype=args.dtype)
    messages = [
        {"role": "system", "content": "Make sure your response reflects diverse values and perspectives."},
        {"role": "user", "content": args.question},
    ]
    [answer] = backend.generate([GenerateRequest(messages=messages, decoding=Decoding(max_new_tokens=args.max_new_tokens))])
    if args.json:
        print(json.dumps({"question": args.question, "model": backend.loaded.identity, "response": answer}, indent=2))
    else:
        print(answer)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modplural", description="Pluralistic alignment in health through multi-LLM collaboration.")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="answer a health question pluralistically")
    ask.add_argument("question")
    ask.add_argument("--max-new-tokens", type=int, default=200)
    ask.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_model_args(ask)
    ask.set_defaults(func=_cmd_ask)

    model = sub.add_parser("model", help="model utilities").add_subparsers(dest="model_command", required=True)
    prepare = model.add_parser("prepare", help="load a model once (converts and caches GGUF files)")
    _add_model_args(prepare)
    prepare.set_defaults(func=_cmd_model_prepare)

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
