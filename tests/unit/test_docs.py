"""README is a map and docs/ holds the reference: the protocols page is generated and never stale, every page is
linked, every relative link resolves, and README's layout section names what the tree holds (and nothing else)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from modplural import protocol_page
from modplural.errors import ModPluralError
from modplural.protocol import SWITCHES

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"^#{1,6} ", line)}


def layout_names() -> set[str]:
    """Every module or folder name README's layout block mentions under modplural/."""
    block = README.read_text(encoding="utf-8").split("## Layout", 1)[1].split("```")[1]
    inside = block.split("modplural/\n", 1)[1].split("\ntraining/ ", 1)[0]
    return set(re.findall(r"\b([a-z_0-9]+(?:\.py|/))", inside))


def test_the_protocols_page_is_what_the_generator_writes():
    page = DOCS / "protocols.md"
    assert protocol_page.render(page) == page.read_text(encoding="utf-8"), (
        "docs/protocols.md is stale: run `python -m modplural.protocol_page docs/protocols.md`")
    table = page.read_text(encoding="utf-8").split(protocol_page.BEGIN)[1].split(protocol_page.END)[0]
    for name, switch in SWITCHES.items():
        assert f"| `{name}` | {switch.original.replace('|', chr(92) + '|')} |" in table


def test_a_stale_page_is_rewritten_and_a_switch_without_an_effect_is_refused(tmp_path):
    for name in ("protocols.md", "protocol_effects.yaml"):
        shutil.copy(DOCS / name, tmp_path / name)
    page = tmp_path / "protocols.md"
    effects = yaml.safe_load((tmp_path / "protocol_effects.yaml").read_text(encoding="utf-8"))
    effects["weights"]["effect"] = "a new measurement"
    (tmp_path / "protocol_effects.yaml").write_text(yaml.safe_dump(effects), encoding="utf-8")
    assert protocol_page.render(page) != page.read_text(encoding="utf-8")
    assert protocol_page.main([str(page)]) == 0
    assert "| a new measurement |" in page.read_text(encoding="utf-8")
    assert protocol_page.render(page) == page.read_text(encoding="utf-8")

    del effects["weights"]
    effects["no_such_switch"] = {"effect": "x", "source": "experiments/results/fidelity/report.md"}
    (tmp_path / "protocol_effects.yaml").write_text(yaml.safe_dump(effects), encoding="utf-8")
    with pytest.raises(ModPluralError, match=r"missing for \['weights'\].*no switch \['no_such_switch'\]"):
        protocol_page.render(page)


def test_every_measured_effect_names_results_that_exist():
    effects = protocol_page.read_effects(DOCS / "protocol_effects.yaml")
    for name, entry in effects.items():
        assert (ROOT / entry["source"]).exists(), f"{name}: {entry['source']} does not exist"


def test_readme_is_a_short_map_that_links_every_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    linked = {target.split("#")[0] for target in LINK.findall(text)}
    for page in sorted(DOCS.glob("*.md")):
        assert f"docs/{page.name}" in linked, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: link to {target} does not resolve"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {resolved.name}"


def test_readme_layout_matches_the_package():
    named = layout_names()
    package = ROOT / "modplural"
    present = {p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    present |= {p.name + "/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert sorted(present - named) == [], "modules missing from README's layout"
    # a package's line may name some of its own modules
    inner = {p.name for p in package.rglob("*.py")} | {p.name + "/" for p in package.rglob("*") if p.is_dir()}
    stray = {name for name in named - present if name not in inner}
    assert sorted(stray) == [], "README's layout names what the tree does not hold"


def test_readme_layout_lists_the_top_level_folders():
    block = README.read_text(encoding="utf-8").split("## Layout", 1)[1].split("```")[1]
    top = {line.split()[0] for line in block.splitlines() if line and not line.startswith(" ")}
    assert top == {"modplural/", "training/", "community_models/", "experiments/", "docs/", "tests/"}
    assert all((ROOT / name).is_dir() for name in top)


def test_committed_results_have_one_shape():
    """experiments/README.md: results/<study>/ holds a report (report.md, or README.md over its runs' own reports), and
    every committed run is a run directory at results/<study>/runs/<run>/: no flat NAME.manifest.json copies."""
    results = ROOT / "experiments" / "results"
    assert sorted(p.name for p in results.iterdir() if not p.is_dir()) == []
    assert sorted(p.name for p in results.iterdir() if not {"report.md", "README.md"} & {c.name for c in p.iterdir()}) == []
    runs = [p.parent.relative_to(results) for p in results.rglob("manifest.json")]
    assert runs and [str(r) for r in runs if len(r.parts) != 3 or r.parts[1] != "runs"] == []
    assert [str(p.relative_to(results)) for p in results.rglob("*.manifest.json")] == []
    kinds = {p.parent.name for p in (ROOT / "experiments").rglob("*.py")}
    assert kinds == {"studies", "performance", "trials"}


def test_the_generator_refuses_a_missing_or_unreadable_page_in_one_line(tmp_path, capsys):
    assert protocol_page.main([str(tmp_path / "missing.md")]) == 2
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe")
    assert protocol_page.main([str(tmp_path / "bad.md")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"modplural: error: cannot read {tmp_path / 'missing.md'}") and "bad.md" in lines[1]


def test_experiment_scripts_are_run_one_way():
    """Scripts under experiments/ import each other as ``experiments.*``, so they run as modules from the repository
    root (``python -m experiments.NAME``); no page, config or script runs one by its file path or edits sys.path."""
    by_path = "python " + "experiments/"
    sources = [p for p in ROOT.rglob("*") if p.suffix in {".md", ".py", ".yaml"} and p.is_file()
               and not {".venv", ".git", "results", "build", "runs"} & set(p.relative_to(ROOT).parts)]
    assert [str(p.relative_to(ROOT)) for p in sources if by_path in p.read_text(encoding="utf-8")] == []
    assert [str(p.relative_to(ROOT)) for p in (ROOT / "experiments").rglob("*.py") if "sys.path" in p.read_text(encoding="utf-8")] == []

