"""Trial (issue 14): train the news poles on their contested-policy passages only, so that what an adapter learns is
how its outlets write about the health questions that divide left and right, not health news in general.

    modplural corpus build
    python -m experiments.trials.contested_news          # -> build/corpora/health_news_*/contested_train.jsonl
    modplural train --community health_news_left --config-dir training/configs/news_contested
    modplural train --community health_news_right --config-dir training/configs/news_contested

then read the views with ``experiments/trials/stance_cloze_check.py --registry`` on a registry whose two news poles point at
``build/adapters/news_contested/`` (training/README.md has the numbers). A passage is kept when it names one of
``TERMS``: the partisan US health-policy disputes, listed before any adapter was trained or any stance read (not
taken from ``stance_questions.yaml``). Only training text is filtered; validation text stays whole.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from modplural.errors import ModPluralError
from modplural.validation import jsonl_objects, jsonl_string

TERMS = (
    "abortion", "planned parenthood", "pro-life", "pro-choice", "roe v", "obamacare", "affordable care act", "individual mandate",
    "mandate", "single-payer", "single payer", "medicare for all", "public option", "socialized medicine", "government-run",
    "repeal", "gun violence", "second amendment", "transgender", "gender-affirming", "drug prices", "big pharma",
    "religious freedom", "religious liberty", "conscience", "lockdown", "exemption", "welfare", "entitlement", "tax",
    "regulation", "free market",
)
PATTERN = re.compile(r"\b(" + "|".join(re.escape(t) for t in TERMS) + r")", re.IGNORECASE)
COMMUNITIES = ("health_news_left", "health_news_center", "health_news_right")


def select(source: Path, target: Path) -> tuple[int, int, int]:
    """Copy the rows of ``source`` whose text names a term; (rows read, rows kept, words kept)."""
    read = kept = words = 0
    with target.open("w", encoding="utf-8") as out:
        for line, row in jsonl_objects(source):
            read += 1
            text = jsonl_string(source, line, row, "text")
            if PATTERN.search(text):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                kept += 1
                words += len(text.split())
    return read, kept, words


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpora", default="build/corpora", help="the output of `modplural corpus build`")
    args = p.parse_args(argv)
    for name in COMMUNITIES:
        source = Path(args.corpora) / name / "train.jsonl"
        if not source.is_file():
            sys.exit(f"contested_news: error: {source}: not found (run `modplural corpus build` first)")
        try:
            read, kept, words = select(source, source.with_name("contested_train.jsonl"))
        except ModPluralError as exc:
            sys.exit(f"contested_news: error: {exc}")
        print(f"{name}: {kept} of {read} training passages kept ({kept / max(read, 1):.0%}), {words} words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
