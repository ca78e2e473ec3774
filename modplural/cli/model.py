"""``modplural model prepare``: load a model once (converts and caches GGUF files)."""

from __future__ import annotations

import argparse

from modplural.cli import options
from modplural.names import WEIGHT_FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="model utilities").add_subparsers(dest="model_command", required=True)
    prepare = model.add_parser("prepare", help="load a model once (converts and caches GGUF files)")
    prepare.add_argument("--model", default=None, help="model spec: 'qwen2.5-coder-1.5b-instruct', 'default' (SmolLM2-135M), a hub id, a directory "
                         "or a .gguf file (default: the main LLM a run gets, MODPLURAL_MAIN_MODEL or qwen2.5-coder-1.5b-instruct)")
    options.add_device(prepare)
    prepare.add_argument("--weight-format", choices=WEIGHT_FORMATS, default=None,
                         help="auto (int8 on a CPU in float32: also writes the int8 cache), float or int8 (default: as a run's main LLM "
                              "loads it: auto, float for 'default', which runs beside its communities)")
    prepare.set_defaults(func=prepare_model)


def prepare_model(args: argparse.Namespace) -> int:
    from modplural.models import DEFAULT_MODEL, default_main_model, is_named, load_model

    spec = args.model or default_main_model()
    weight_format = args.weight_format or ("float" if is_named(spec, DEFAULT_MODEL) else "auto")
    loaded = load_model(spec, device=args.device, dtype=args.dtype, weight_format=weight_format)
    print(f"{loaded.identity} ready on {loaded.device} ({loaded.dtype}, {loaded.weight_format} weights)")
    return 0
