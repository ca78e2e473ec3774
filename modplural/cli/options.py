"""Options several commands share; their choices come from the registries of methods, engines, modes and scorers."""

from __future__ import annotations

import argparse

from modplural.errors import ModPluralError
from modplural.names import ENGINES, METHOD_NAMES
from modplural.names import DEVICES, DTYPES, WEIGHT_FORMATS
from modplural.protocol import PROTOCOLS
from modplural.scorers import SCORERS
from modplural.types import MODE_ALIASES, MODES


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument("--device", choices=DEVICES, default=default, help="where the model runs")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="weights' precision")


def add_registry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default=None, help="registry YAML (default: MODPLURAL_REGISTRY or the shipped one)")
    parser.add_argument("--communities", default=None, help="comma-separated subset of the registry (default: all)")


def add_data_dir(parser: argparse.ArgumentParser, help_text: str = "data root (default: MODPLURAL_DATA or ../shared/data)") -> None:
    parser.add_argument("--data-dir", default=None, help=help_text)


def add_engine(parser: argparse.ArgumentParser, default: str | None = "batched") -> None:
    parser.add_argument("--engine", choices=ENGINES, default=default, help="sequential: the original's one-prompt-at-a-time pattern (slow; for comparison)")


def add_stack(parser: argparse.ArgumentParser) -> None:
    """What ``modplural.load`` builds the stack from: main model, communities, servers, engine, device, batch size, cache."""
    parser.add_argument("--model", default=None, help="main LLM spec: 'qwen2.5-coder-1.5b-instruct', 'default' (SmolLM2-135M, the communities' base, "
                        "shared in memory), a hub id, a directory or a .gguf file (wins over a servers file's main:; default: MODPLURAL_MAIN_MODEL "
                        "or qwen2.5-coder-1.5b-instruct)")
    parser.add_argument("--main-weight-format", choices=WEIGHT_FORMATS, default="auto",
                        help="how the main LLM's weights are stored: auto (int8 on a CPU in float32), float (as --dtype says) or int8")
    add_registry(parser)
    parser.add_argument("--servers", default=None, help="servers YAML: communities and/or the main LLM on OpenAI-compatible servers")
    add_engine(parser)
    add_device(parser)
    parser.add_argument("--batch-size", default="auto", help="rows decoded together, or 'auto' (from free memory)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache of community messages and main-LLM answers")
    parser.add_argument("--cache", default=None, help="cache file of messages and main-LLM answers (default: $MODPLURAL_CACHE/messages.sqlite)")


def add_protocol(parser: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default=default, help=help_text)


def add_switches(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--switch", action="append", default=[], metavar="NAME=VALUE",
                        help="flip one protocol switch (repeat), e.g. --switch repetition=none (docs/protocols.md)")


def protocol_spec(base: str | dict, switches: list[str]) -> str | dict:
    """``base`` with the ``--switch NAME=VALUE`` settings on top (values that read as numbers become numbers)."""
    if not switches:
        return base
    flipped: dict = {}
    for text in switches:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ModPluralError(f"--switch needs NAME=VALUE, got {text!r}")
        flipped[name.strip()] = _number(value.strip())
    return {"base": base, **flipped}


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def add_method(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=list(METHOD_NAMES), default="modular")


def add_mode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=[*MODES, *MODE_ALIASES], default="overton", help=f"aliases: {', '.join(f'{a} = {m}' for a, m in MODE_ALIASES.items())}")


def add_scorer(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--scorer", choices=SCORERS, default=None, help=help_text)


def names(text: str | None) -> list[str] | None:
    """A comma-separated list option, or None."""
    return text.split(",") if text else None
