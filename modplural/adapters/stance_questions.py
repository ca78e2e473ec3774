"""The contested health questions that stance distinctness asks (``stance_questions.yaml`` in this package): read
and validated, every problem a one-line error naming the file, the question and the field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modplural.config_files import from_mapping, read_yaml
from modplural.errors import ModPluralError
from modplural.prompts.modplural import with_options
from modplural.provenance import file_sha256

QUESTIONS_FILE = Path(__file__).with_name("stance_questions.yaml")
VERSION = 1  # the file format this module reads
AXES = {
    "political": "political leaning",
    "bioethics": "bioethics, permissive/autonomy vs protective/restrictive",
    "clinical_role": "clinician vs patient",
    "public_health": "public health vs individual liberty",
    "global_south": "global south",
}
MIN_OPTIONS, MAX_OPTIONS = 2, 5
_ID = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class StanceQuestion:
    """One contested question, its options (the positions people hold) and the axis it probes."""

    id: str
    axis: str
    question: str
    options: tuple[str, ...]

    @property
    def prompt(self) -> str:
        """The question with its options lettered A, B, ... (``prompts.modplural.with_options``)."""
        return with_options(self.question, self.options)


@dataclass(frozen=True)
class QuestionSet:
    """A validated question file: its questions, version and a digest of its bytes (results record both)."""

    path: Path
    version: int
    digest: str
    questions: tuple[StanceQuestion, ...]


@dataclass(frozen=True)
class _QuestionFile:
    version: int
    questions: tuple[Any, ...]


def _question(where: str, data: Any) -> StanceQuestion:
    """One entry; errors name ``where`` (file and position) and the id once it reads as one."""
    qid = data.get("id") if isinstance(data, dict) else None
    named = f"{where} ({qid})" if isinstance(qid, str) and _ID.fullmatch(qid) else where
    q = from_mapping(StanceQuestion, data, named)
    if not _ID.fullmatch(q.id):
        raise ModPluralError(f"{where}: field 'id' must be lower_snake_case, got {q.id!r}")
    if q.axis not in AXES:
        raise ModPluralError(f"{named}: field 'axis' is {q.axis!r}; choose one of {', '.join(AXES)}")
    if not q.question.strip():
        raise ModPluralError(f"{named}: field 'question' is empty")
    if not MIN_OPTIONS <= len(q.options) <= MAX_OPTIONS:
        raise ModPluralError(f"{named}: field 'options' needs {MIN_OPTIONS} to {MAX_OPTIONS} options, got {len(q.options)}")
    options = tuple(o.strip() for o in q.options)
    if not all(options):
        raise ModPluralError(f"{named}: field 'options' has an empty option")
    if len({o.lower() for o in options}) != len(options):
        raise ModPluralError(f"{named}: field 'options' repeats an option: {list(options)}")
    if all(o in q.question for o in options):
        raise ModPluralError(f"{named}: field 'options': every option already occurs in the question, so none would be lettered")
    return StanceQuestion(q.id, q.axis, q.question.strip(), options)


def load_questions(path: str | Path | None = None) -> QuestionSet:
    """Read and validate a question file (default: the shipped ``stance_questions.yaml``)."""
    path = Path(path).expanduser() if path else QUESTIONS_FILE
    data = from_mapping(_QuestionFile, read_yaml(path, extends_key=None), str(path))
    if data.version != VERSION:
        raise ModPluralError(f"{path}: field 'version' is {data.version}; this modplural reads version {VERSION}")
    if not data.questions:
        raise ModPluralError(f"{path}: field 'questions' is empty")
    questions = tuple(_question(f"{path}: question {i}", entry) for i, entry in enumerate(data.questions))
    seen: set[str] = set()
    for i, q in enumerate(questions):
        if q.id in seen:
            raise ModPluralError(f"{path}: question {i}: field 'id' {q.id!r} is used twice")
        seen.add(q.id)
    return QuestionSet(path, data.version, file_sha256(path)[:16], questions)
