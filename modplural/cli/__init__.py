"""The ``modplural`` command line: parse arguments, call the library, print. No logic of its own.

One module per command group (``ask``; ``runs``: run/score/report/view/data; ``communities``; ``training``:
corpus/train; ``model``); ``options`` holds the options they share.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Sequence

from modplural.cli import ask, communities, compare, model, runs, training
from modplural.text import terminal_safe
from modplural.errors import ModPluralError


class OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"modplural: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="modplural", description="Pluralistic alignment in health through multi-LLM collaboration.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (ask, model, training, runs, compare, communities):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user-facing errors become one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModPluralError as exc:
        print(f"modplural: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modplural: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
