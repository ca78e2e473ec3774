"""docs/protocols.md's switch table, written from ``protocol.SWITCHES`` and the measured effects beside the page.

``python -m modplural.protocol_page docs/protocols.md`` rewrites the table between the page's two markers; the
effects come from ``protocol_effects.yaml`` in the same directory (one entry per switch, plus ``all switches``,
each naming the results it was read from). ``tests/unit/test_docs.py`` fails when the page differs from what this
writes, so the table cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from modplural.atomic_files import write_atomic
from modplural.errors import ModPluralError
from modplural.protocol import SWITCHES

BEGIN = "<!-- switch table: written by `python -m modplural.protocol_page docs/protocols.md` -->"
END = "<!-- end of switch table -->"
ALL = "all switches"
HEADER = ["switch", "original (file)", "modplural", "why", "measured effect (flipped alone, significant cells)", "measured in"]


def read_effects(path: Path) -> dict[str, dict[str, str]]:
    """Switch name -> {effect, source}; every switch and ``all switches`` must have one, nothing else may."""
    try:
        effects = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModPluralError(f"cannot read {path}: {exc}") from None
    if not isinstance(effects, dict):
        raise ModPluralError(f"{path}: expected a mapping of switch names")
    expected = [*SWITCHES, ALL]
    missing = [name for name in expected if name not in effects]
    unknown = [name for name in effects if name not in expected]
    if missing or unknown:
        raise ModPluralError(f"{path}: entries missing for {missing or 'none'}, entries for no switch {unknown or 'none'}")
    for name, entry in effects.items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("effect", "source")):
            raise ModPluralError(f"{path}: {name!r} needs an 'effect' and a 'source' (text)")
    return effects


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def table(effects: dict[str, dict[str, str]], root: str) -> list[str]:
    """The markdown table; ``root`` is the repository root relative to the page (links to the results)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    rows = [(f"`{name}`", switch.original, switch.modplural, switch.why) for name, switch in SWITCHES.items()]
    rows.append((ALL, "protocol original", "protocol modplural", "—"))
    for (label, original, ours, why), name in zip(rows, [*SWITCHES, ALL]):
        source = effects[name]["source"]
        link = f"[{source.removeprefix('experiments/results/')}]({root}/{source})"
        lines.append("| " + " | ".join(cell(c) for c in (label, original, ours, why, effects[name]["effect"])) + f" | {link} |")
    return lines


def render(page: Path) -> str:
    """The page with its switch table rewritten."""
    try:
        text = page.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModPluralError(f"cannot read {page}: {getattr(exc, 'strerror', None) or exc}") from None
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ModPluralError(f"{page}: needs one {BEGIN!r} line and, after it, one {END!r} line")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    effects = read_effects(page.parent / "protocol_effects.yaml")
    return head + BEGIN + "\n" + "\n".join(table(effects, "..")) + "\n" + END + tail


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m modplural.protocol_page docs/protocols.md", file=sys.stderr)
        return 2
    page = Path(args[0])
    try:
        write_atomic(page, render(page))
    except ModPluralError as exc:
        print(f"modplural: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
