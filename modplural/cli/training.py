"""Training community LMs: ``modplural corpus build`` and ``modplural train``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from modplural.cli import options
from modplural.errors import ModPluralError

if TYPE_CHECKING:
    from modplural.training.config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    from modplural.training.config import CONFIG_DIR

    corpus = sub.add_parser("corpus", help="training corpora").add_subparsers(dest="corpus_command", required=True)
    build = corpus.add_parser("build", help="build one JSONL corpus per community from the raw public corpora")
    options.add_data_dir(build, "data root holding corpora_raw/ (default: MODPLURAL_DATA or ../shared/data)")
    build.add_argument("--raw-dir", default=None, help="the raw corpora directory itself")
    build.add_argument("--out", default="build/corpora")
    build.add_argument("--communities", default=None, help="comma-separated subset")
    build.add_argument("--valid-fraction", type=float, default=0.1)
    build.add_argument("--tokenizer", default="default", help="model spec whose tokenizer counts tokens")
    build.add_argument("--no-tokens", action="store_true", help="count words instead of tokens")
    build.set_defaults(func=build_corpora)

    trainer = sub.add_parser("train", help="train community LoRA adapters from training/configs")
    trainer.add_argument("--community", default=None)
    trainer.add_argument("--all", action="store_true")
    trainer.add_argument("--config-dir", default=str(CONFIG_DIR))
    trainer.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    trainer.add_argument("--corpus-dir", default=None)
    trainer.add_argument("--output-dir", default=None, help="override output_dir (may contain {community})")
    trainer.add_argument("--device", default=None)
    trainer.add_argument("--restart", action="store_true", help="discard an interrupted run's checkpoint")
    trainer.add_argument("--skip-finished", action="store_true", help="with --all: leave finished adapters alone")
    trainer.set_defaults(func=train)


def build_corpora(args: argparse.Namespace) -> int:
    from modplural.data_paths import data_dir
    from modplural.training.corpora import build_corpora as build, summary_table

    raw = Path(args.raw_dir) if args.raw_dir else data_dir(args.data_dir) / "corpora_raw"
    count = None
    if not args.no_tokens:
        from modplural.models import load_model

        tokenizer = load_model(args.tokenizer, device="cpu").tokenizer
        count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    summary = build(raw, Path(args.out), options.names(args.communities), valid_fraction=args.valid_fraction, count_tokens=count)
    print(summary_table(summary))
    print(f"wrote {len(summary)} corpora to {args.out}")
    return 0


def train(args: argparse.Namespace) -> int:
    from modplural.training.config import all_community_configs, community_config_path, load_train_config
    from modplural.training.lora import train as train_adapter

    config_dir = Path(args.config_dir)
    if args.all == bool(args.community):
        raise ModPluralError("give --community NAME or --all")
    paths = all_community_configs(config_dir) if args.all else [community_config_path(args.community, config_dir)]
    overrides = {"max_steps": args.max_steps, "corpus_dir": args.corpus_dir, "output_dir": args.output_dir, "device": args.device}
    configs = [load_train_config(p, **overrides) for p in paths]  # validate every config before training any
    _check_output_dirs(configs)
    for config in configs:
        if args.skip_finished and (config.adapter_dir / "training_manifest.json").is_file():
            print(f"{config.community}: finished adapter at {config.adapter_dir}, skipped")
            continue
        adapter_dir = train_adapter(config, restart=args.restart)
        write_card_after_training(config.community, adapter_dir)
        print(f"{config.community}: adapter at {adapter_dir}")
    return 0


def write_card_after_training(community: str, adapter_dir: Path) -> None:
    """The model card (README.md) of a freshly trained adapter; a problem with the card is a notice, never a lost run."""
    from modplural.adapters.model_card import registry_entry, write_card

    try:
        write_card(adapter_dir, registry_entry(adapter_dir), results_dir=adapter_dir.parent)
    except ModPluralError as exc:
        print(f"modplural: note: no model card for {community}: {exc}", file=sys.stderr)


def _check_output_dirs(configs: list[TrainConfig]) -> None:
    """Before any model loads: every community has its own output directory, and none holds what modplural did not write."""
    from modplural.training.lora import check_output_dir

    owners: dict[Path, str] = {}
    for config in configs:
        other = owners.setdefault(config.adapter_dir, config.community)
        if other != config.community:
            raise ModPluralError(f"communities {other!r} and {config.community!r} would both be written to {config.adapter_dir}; "
                                 "put {community} in --output-dir (or output_dir)")
        check_output_dir(config.adapter_dir)
