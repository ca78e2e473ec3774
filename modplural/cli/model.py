"""``modplural model prepare``: load a model once (converts and caches GGUF files)."""

from __future__ import annotations

import argparse

from modplural.cli import options


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="model utilities").add_subparsers(dest="model_command", required=True)
    prepare = model.add_parser("prepare", help="load a model once (converts and caches GGUF files)")
    prepare.add_argument("--model", default="default", help="model spec: 'default', a hub id, a directory or a .gguf file")
    options.add_device(prepare)
    prepare.set_defaults(func=prepare_model)


def prepare_model(args: argparse.Namespace) -> int:
    from modplural.models import load_model

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    print(f"{loaded.identity} ready on {loaded.device} ({loaded.dtype})")
    return 0
