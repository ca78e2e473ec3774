"""Corpus builders: raw public health corpora -> one JSONL corpus per community.

Each builder reads one raw source and yields documents tagged with a community. Documents are cut into
passages (paragraphs packed up to ``max_words``), passages shorter than ``min_words`` are dropped, exact
duplicates (after whitespace and case folding) are removed within a community, and every document goes
wholly to train or to validation by a hash of its id, so the split is deterministic and by document.
Output: ``OUT/<community>/{train,valid}.jsonl`` with rows ``{"text", "source", "doc_id"}`` and ``OUT/summary.json``;
for communities whose documents carry a stance on a motion (bioethics), also ``OUT/<community>/stance_train.jsonl``,
the training passages as answered questions (``stance_examples.py``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from modplural.atomic_files import own_directory, write_atomic
from modplural.errors import ModPluralError
from modplural.training.motions import MOTION_SUPPORTERS, side
from modplural.training.stance_examples import FILE as STANCE_FILE
from modplural.training.stance_examples import stance_example
from modplural.validation import jsonl_objects, jsonl_string
from modplural.seeds import derived_seed

csv.field_size_limit(1 << 30)


@dataclass(frozen=True)
class Document:
    community: str
    doc_id: str
    source: str
    text: str
    motion: str | None = None  # the motion the text argues about, if it is a labelled argument
    supports: bool | None = None  # whether the text supports that motion


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ModPluralError(f"raw corpus file missing: {path}")
    return path


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    yield from jsonl_objects(_require(path))


def _csv(path: Path, fields: Iterable[str]) -> Iterator[tuple[int, dict]]:
    with _require(path).open(newline="", encoding="utf-8") as f:
        try:
            reader = csv.DictReader(f)
            missing = [c for c in fields if c not in (reader.fieldnames or [])]
            if missing:
                raise ModPluralError(f"{path}: missing column(s) {', '.join(missing)}")
            for row_no, row in enumerate(reader, 2):
                yield row_no, row
        except UnicodeDecodeError:  # text is decoded in chunks: find the line from the bytes
            raise ModPluralError(f"{path}: line {_first_non_utf8_line(path)} is not UTF-8 text") from None


def _first_non_utf8_line(path: Path) -> int:
    """The line of the first byte that is not UTF-8 (0 if the file decodes after all)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return data.count(b"\n", 0, exc.start) + 1
    return 0


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- builders, one per raw source
def health_news(raw: Path) -> Iterator[Document]:
    """Article-Bias-Prediction health articles -> health_news_{left,center,right} by outlet leaning."""
    path = raw / "article_bias_health" / "articles.jsonl"
    for line, row in _jsonl(path):
        bias = jsonl_string(path, line, row, "bias_text")
        if bias not in ("left", "center", "right"):
            raise ModPluralError(f"{path}: line {line}: field 'bias_text' is {bias!r}, expected left, center or right")
        text = f"{jsonl_string(path, line, row, 'title')}\n\n{jsonl_string(path, line, row, 'content_original')}"
        yield Document(f"health_news_{bias}", f"abp:{jsonl_string(path, line, row, 'ID')}", row.get("source", "unknown"), text)


def bioethics(raw: Path) -> Iterator[Document]:
    """IBM Debater arguments on health motions -> bioethics_permissive / bioethics_protective (see motions.py)."""
    rank = raw / "ibm_debater" / "arg_quality_rank_30k.csv"
    for line, row in _csv(rank, ["argument", "topic", "stance_WA", "stance_WA_conf"]):
        if float(row["stance_WA_conf"] or 0) < 0.6:
            continue
        stance = int(float(row["stance_WA"] or 0))
        community = side(row["topic"], stance)
        if community:
            yield Document(community, f"argq:{_digest(row['argument'])}", f"IBM ArgQ-Rank-30k: {row['topic']}", row["argument"], row["topic"], stance == 1)
    keypoints = raw / "ibm_debater" / "ArgKP-2021_dataset.csv"
    for line, row in _csv(keypoints, ["argument", "topic", "stance"]):
        stance = int(float(row["stance"] or 0))
        community = side(row["topic"], stance)
        if community:
            yield Document(community, f"argkp:{_digest(row['argument'])}", f"IBM ArgKP-2021: {row['topic']}", row["argument"], row["topic"], stance == 1)


_MTS_TURN = re.compile(r"\b(Doctor|Patient|Guest_family|Guest_clinician)\s*:\s*", re.IGNORECASE)
_ACI_TURN = re.compile(r"\[(doctor|patient|patient_guest|doctor_guest)\]\s*", re.IGNORECASE)


def _speaker_turns(dialogue: str, pattern: re.Pattern) -> dict[str, list[str]]:
    """Each speaker's utterances; a speaker tag starts a new turn even in the middle of a line."""
    turns: dict[str, list[str]] = {"doctor": [], "patient": []}
    current = None
    for line in pattern.sub(lambda m: "\n" + m.group(0), dialogue).splitlines():
        match = pattern.match(line.strip())
        if match:
            speaker = match.group(1).lower()
            current = "doctor" if speaker == "doctor" else "patient" if speaker == "patient" else None
            line = line.strip()[match.end():]
        if current and line.strip():
            turns[current].append(line.strip())
    return turns


def dialogues(raw: Path) -> Iterator[Document]:
    """MTS-Dialog and ACI-Bench encounters -> clinicians (doctor turns + notes) and patients (patient turns)."""
    sources = [
        ("mts_dialog", ["MTS-Dialog-TrainingSet.csv", "MTS-Dialog-ValidationSet.csv", "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv", "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv"], "ID", "section_text", _MTS_TURN),
        ("aci_bench", ["train.csv", "valid.csv", "clinicalnlp_taskB_test1.csv", "clinicalnlp_taskC_test2.csv", "clef_taskC_test3.csv"], "encounter_id", "note", _ACI_TURN),
    ]
    for folder, files, id_field, note_field, pattern in sources:
        for name in files:
            path = raw / folder / name
            for line, row in _csv(path, [id_field, "dialogue", note_field]):
                doc_id = f"{folder}:{Path(name).stem}:{row[id_field]}"
                turns = _speaker_turns(row["dialogue"], pattern)
                clinician = "\n".join(turns["doctor"]) + "\n\n" + row[note_field]
                yield Document("clinicians", doc_id, folder, clinician)
                yield Document("patients", doc_id, folder, "\n".join(turns["patient"]))


def public_health(raw: Path) -> Iterator[Document]:
    """MedQuAD consumer-health answers written by NIH institutes and CDC -> public_health_agencies."""
    path = raw / "medquad" / "qa.jsonl"
    for line, row in _jsonl(path):
        answer = jsonl_string(path, line, row, "answer")
        question = jsonl_string(path, line, row, "question")
        yield Document("public_health_agencies", f"medquad:{_digest(row.get('url', '') + question)}", row.get("source", "NIH"), answer)


def african_clinicians(raw: Path) -> Iterator[Document]:
    """AfriMed-QA questions with expert rationales by African clinicians (CC BY-NC-SA 4.0)."""
    path = raw / "afrimed_qa" / "qa.jsonl"
    for line, row in _jsonl(path):
        text = f"{jsonl_string(path, line, row, 'question')}\n\n{jsonl_string(path, line, row, 'rationale')}"
        yield Document("african_clinicians", f"afrimed:{jsonl_string(path, line, row, 'sample_id')}", "AfriMed-QA", text)


BUILDERS: dict[str, Callable[[Path], Iterator[Document]]] = {
    "health_news": health_news,
    "bioethics": bioethics,
    "dialogues": dialogues,
    "public_health": public_health,
    "african_clinicians": african_clinicians,
}
COMMUNITY_BUILDER: dict[str, str] = {
    "health_news_left": "health_news",
    "health_news_center": "health_news",
    "health_news_right": "health_news",
    "bioethics_permissive": "bioethics",
    "bioethics_protective": "bioethics",
    "clinicians": "dialogues",
    "patients": "dialogues",
    "public_health_agencies": "public_health",
    "african_clinicians": "african_clinicians",
}
assert set(side for side in MOTION_SUPPORTERS.values()) <= set(COMMUNITY_BUILDER)


# ----------------------------------------------------------------------------- passages, split, output
def passages(text: str, min_words: int, max_words: int) -> list[str]:
    """Pack paragraphs (and, for long paragraphs, runs of words) into passages of at most ``max_words``."""
    pieces: list[list[str]] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):
        words = paragraph.split()
        for start in range(0, len(words), max_words):
            pieces.append(words[start : start + max_words])
    out, current = [], []
    for words in pieces:
        if current and len(current) + len(words) > max_words:
            out.append(current)
            current = []
        current = current + words
    if current:
        out.append(current)
    return [" ".join(p) for p in out if len(p) >= min_words]


def is_validation(doc_id: str, valid_fraction: float) -> bool:
    """Deterministic by-document split."""
    return derived_seed(doc_id) % 10_000 < valid_fraction * 10_000


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_atomic(own_directory(path.parent) / path.name, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def build_corpora(
    raw_dir: Path,
    out_dir: Path,
    communities: list[str] | None = None,
    valid_fraction: float = 0.1,
    min_words: int = 8,
    max_words: int = 160,
    count_tokens: Callable[[str], int] | None = None,
) -> dict[str, dict]:
    """Build the corpora of ``communities`` (default: all); returns and writes the per-community summary."""
    communities = communities or list(COMMUNITY_BUILDER)
    for name in communities:
        if name not in COMMUNITY_BUILDER:
            raise ModPluralError(f"unknown community {name!r} (corpus builders exist for: {', '.join(COMMUNITY_BUILDER)})")
    if not raw_dir.is_dir():
        raise ModPluralError(f"raw corpus directory not found: {raw_dir}")
    rows: dict[str, dict[str, list[dict]]] = {c: {"train": [], "valid": []} for c in communities}
    examples: dict[str, list[dict]] = {c: [] for c in communities}
    docs: dict[str, dict[str, set]] = {c: {"train": set(), "valid": set()} for c in communities}
    seen: dict[str, set[str]] = {c: set() for c in communities}
    for builder in sorted({COMMUNITY_BUILDER[c] for c in communities}):
        for doc in BUILDERS[builder](raw_dir):
            if doc.community not in rows:
                continue
            split = "valid" if is_validation(doc.doc_id, valid_fraction) else "train"
            for text in passages(doc.text, min_words, max_words):
                key = " ".join(text.lower().split())
                if key in seen[doc.community]:
                    continue
                seen[doc.community].add(key)
                rows[doc.community][split].append({"text": text, "source": doc.source, "doc_id": doc.doc_id})
                if split == "train" and doc.motion is not None:
                    examples[doc.community].append(stance_example(doc.motion, bool(doc.supports), text, doc.doc_id, doc.source))
                docs[doc.community][split].add(doc.doc_id)
    summary = {}
    for community in communities:
        split_rows = rows[community]
        if len(split_rows["train"]) < 8 or not split_rows["valid"]:
            raise ModPluralError(
                f"corpus for {community!r} is too small ({len(split_rows['train'])} train / {len(split_rows['valid'])} validation passages) in {raw_dir}"
            )
        for split, items in split_rows.items():
            _write_jsonl(out_dir / community / f"{split}.jsonl", items)
        if examples[community]:
            _write_jsonl(out_dir / community / STANCE_FILE, examples[community])
        summary[community] = {
            split: {
                "documents": len(docs[community][split]),
                "passages": len(items),
                "words": sum(len(r["text"].split()) for r in items),
                **({"tokens": sum(count_tokens(r["text"]) for r in items)} if count_tokens else {}),
            }
            for split, items in split_rows.items()
        }
    existing = json.loads((out_dir / "summary.json").read_text()) if (out_dir / "summary.json").is_file() else {}
    (out_dir / "summary.json").write_text(json.dumps({**existing, **summary}, indent=2) + "\n")
    return summary


def summary_table(summary: dict[str, dict]) -> str:
    """A plain-text table of documents, passages and tokens (or words) per community and split."""
    unit = "tokens" if all("tokens" in s["train"] for s in summary.values()) else "words"
    header = f"{'community':<24} {'train docs':>10} {'passages':>9} {unit:>10} {'valid docs':>10} {'passages':>9} {unit:>10}"
    lines = [header, "-" * len(header)]
    for name, s in summary.items():
        t, v = s["train"], s["valid"]
        lines.append(f"{name:<24} {t['documents']:>10} {t['passages']:>9} {t[unit]:>10} {v['documents']:>10} {v['passages']:>9} {v[unit]:>10}")
    return "\n".join(lines)
