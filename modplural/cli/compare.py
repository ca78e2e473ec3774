"""``modplural compare RUN --with PAPER``: a finished run's metrics beside a paper's published numbers (no model loaded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from modplural.text import terminal_safe


def register(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser("compare", help="set a finished run's metrics beside a paper's published numbers (reads files only)")
    compare.add_argument("run", help="a finished run directory (or a committed one: experiments/results/<study>/runs/<run>)")
    compare.add_argument("--with", dest="paper", required=True, help="vital or modular_pluralism (experiments/published/), or a published-numbers YAML file")
    compare.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from modplural.papers.compare import compare
    from modplural.papers.published import load_paper
    from modplural.papers.run_metrics import read_run

    paper = load_paper(args.paper)
    print(terminal_safe(compare(read_run(Path(args.run)), paper)))
    return 0
