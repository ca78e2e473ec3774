"""A paper's published numbers (``experiments/published/<paper>.yaml``): read strictly, every number with its source.

Each number names its task, method, the main LLM as the paper names it, its metric definition
(``definitions.py``), value and unit, and where it was read (url, table or figure, page or section). An unknown
field, task, method or definition is a one-line error naming the file and the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modplural.config_files import from_mapping, read_yaml
from modplural.errors import ModPluralError
from modplural.names import METHOD_NAMES
from modplural.papers.definitions import Definition, convert, definition
from modplural.tasks import TASKS, get_task
from modplural.validation import finite_float

PUBLISHED_DIR = Path(__file__).resolve().parents[2] / "experiments" / "published"
PAPERS = ("vital", "modular_pluralism")  # names ``--with`` accepts; each is PUBLISHED_DIR/<name>.yaml


@dataclass(frozen=True)
class Source:
    """Where a number was read."""

    url: str
    table: str  # "Table 2", "Figure 3"
    page: str  # "p. 6", "Section 5.1"


@dataclass(frozen=True)
class Number:
    """One published number, as its file states it."""

    task: str
    method: str
    main_llm: str  # as the paper names it
    metric: str  # a definition in definitions.DEFINITIONS
    value: float
    unit: str  # fraction or percent
    source: Source
    hub_id: str | None = None  # the main LLM's hub id, where the paper or its code names one


@dataclass(frozen=True)
class Published:
    """A checked number: its definition and its value in modplural's unit."""

    number: Number
    definition: Definition
    value: float


@dataclass(frozen=True)
class _PaperFile:
    paper: str
    citation: str
    url: str
    tasks: tuple[str, ...]
    nli_model: str  # the Overton scorer's NLI model the paper's numbers were scored with
    numbers: tuple[Any, ...] = ()
    not_read: str | None = None  # why tables are missing, where they are


@dataclass(frozen=True)
class Paper:
    """A paper's file, its numbers checked and converted."""

    path: Path
    name: str
    citation: str
    url: str
    tasks: tuple[str, ...]
    nli_model: str
    numbers: tuple[Published, ...]
    not_read: str | None


def paper_path(name_or_path: str) -> Path:
    """``--with``'s file: a known paper's name, or a published-numbers YAML file."""
    if name_or_path in PAPERS:
        return PUBLISHED_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise ModPluralError(f"unknown paper {name_or_path!r} for --with: choose {' or '.join(PAPERS)}, or give a published-numbers YAML file")


def load_paper(name_or_path: str) -> Paper:
    """Read and check the published numbers ``--with`` names."""
    path = paper_path(name_or_path)
    raw = from_mapping(_PaperFile, read_yaml(path, extends_key=None), str(path))
    for task in raw.tasks:
        if task not in TASKS:
            raise ModPluralError(f"{path}: unknown task {task!r} in 'tasks' (choose from {', '.join(TASKS)})")
    numbers = tuple(_number(raw, entry, f"{path}: number {i}") for i, entry in enumerate(raw.numbers))
    seen: set[tuple] = set()
    for p in numbers:
        key = (p.number.task, p.number.method, p.number.main_llm, p.number.metric)
        if key in seen:
            raise ModPluralError(f"{path}: {' / '.join(key)} is listed twice")
        seen.add(key)
    return Paper(path, raw.paper, raw.citation, raw.url, raw.tasks, raw.nli_model, numbers, raw.not_read)


def _number(paper: _PaperFile, entry: Any, where: str) -> Published:
    number = from_mapping(Number, entry, where)
    if number.task not in paper.tasks:
        raise ModPluralError(f"{where}: task {number.task!r} is not one of the paper's tasks ({', '.join(paper.tasks)})")
    if number.method not in METHOD_NAMES:
        raise ModPluralError(f"{where}: unknown method {number.method!r} (choose from {', '.join(METHOD_NAMES)})")
    found = definition(number.metric, get_task(number.task)[0].name, where)
    value = convert(finite_float(number.value, f"{where}: value"), number.unit, where)
    if not 0 <= value <= 1:
        raise ModPluralError(f"{where}: value {number.value} {number.unit} is not in [0, 1] once converted; check its unit")
    return Published(number, found, value)
