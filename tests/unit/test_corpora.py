"""Corpus builders on slices of the real raw corpora, and corpus rows that are not text: one line naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modplural.errors import ModPluralError
from modplural.training.config import load_train_config
from modplural.training.corpora import COMMUNITY_BUILDER, build_corpora, passages
from modplural.training.motions import PERMISSIVE, PROTECTIVE, side
from tests.helpers import assert_one_line_error, run_cli, write_corpus


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without(raw: Path, dest: Path, relative: str) -> Path:
    import shutil

    shutil.copytree(raw, dest / "raw", dirs_exist_ok=True)
    (dest / "raw" / relative).unlink()
    return dest / "raw"


REPO = Path(__file__).resolve().parents[2]
PATIENTS = REPO / "training" / "configs" / "patients.yaml"
BAD_ROWS = {
    "latin-1": ('{"text": "caf\xe9 au lait"}'.encode("latin-1"), "line 2 is not UTF-8 text"),
    "number": (b'{"text": 123}', "line 2: field 'text' is 123, not a string"),
    "null": (b'{"text": null}', "line 2: field 'text' is null, not a string"),
    "missing": (b'{"body": "hello"}', "line 2: missing field 'text'"),
    "list": (b'["hello"]', "line 2 is not a JSON object"),
    "broken": (b'{"text": "hel', "line 2 is not valid JSON"),
}


def _raw_dir(tmp_path: Path) -> Path:
    (tmp_path / "raw" / "medquad").mkdir(parents=True)
    (tmp_path / "raw" / "ibm_debater").mkdir(parents=True)
    return tmp_path / "raw"


def test_builders_write_every_community_split_by_document(corpora):
    out, summary = corpora
    assert set(summary) == set(COMMUNITY_BUILDER)
    for community in COMMUNITY_BUILDER:
        train, valid = _rows(out / community / "train.jsonl"), _rows(out / community / "valid.jsonl")
        assert train and valid
        assert all(set(r) == {"text", "source", "doc_id"} and r["text"].strip() for r in train + valid)
        assert not {r["doc_id"] for r in train} & {r["doc_id"] for r in valid}, community
        texts = [" ".join(r["text"].lower().split()) for r in train + valid]
        assert len(texts) == len(set(texts)), f"{community} has duplicate passages"
        assert all(8 <= len(r["text"].split()) <= 160 for r in train + valid)
        assert summary[community]["train"]["passages"] == len(train)
    assert json.loads((out / "summary.json").read_text()) == summary


def test_builders_are_deterministic(raw, corpora, tmp_path):
    out, _ = corpora
    build_corpora(raw, tmp_path, ["patients", "health_news_right"])
    for community in ("patients", "health_news_right"):
        for split in ("train", "valid"):
            assert (tmp_path / community / f"{split}.jsonl").read_bytes() == (out / community / f"{split}.jsonl").read_bytes()


def test_dialogue_turns_go_to_the_right_speaker(corpora):
    out, _ = corpora
    patients = " ".join(r["text"] for r in _rows(out / "patients" / "train.jsonl"))
    clinicians = " ".join(r["text"] for r in _rows(out / "clinicians" / "train.jsonl"))
    assert "Doctor:" not in patients and "[doctor]" not in patients and "Patient:" not in clinicians
    assert "CHIEF COMPLAINT" in clinicians or "HISTORY OF PRESENT ILLNESS" in clinicians  # notes count as clinician text


def test_bioethics_corpora_also_hold_their_training_arguments_as_answered_motions(corpora):
    from modplural.training.stance_examples import AGREE, DISAGREE

    out, _ = corpora
    for community in (PERMISSIVE, PROTECTIVE):
        train = _rows(out / community / "train.jsonl")
        examples = _rows(out / community / "stance_train.jsonl")
        assert [e["doc_id"] for e in examples] == [r["doc_id"] for r in train]  # training documents only, one per passage
        letters = set()
        for example, row in zip(examples, train):
            user, assistant = example["messages"]
            motion = row["source"].split(": ", 1)[1]
            assert user["role"] == "user" and f"motion? {motion.rstrip('.')}." in user["content"]
            options = dict(line.split(". ", 1) for line in user["content"].splitlines()[1:])
            assert sorted(options.values()) == sorted([AGREE, DISAGREE])
            answer, argument = assistant["content"].split("\n\n", 1)
            letter = answer.removeprefix("Answer: ")
            assert assistant["role"] == "assistant" and argument == row["text"]
            assert side(motion, 1 if options[letter] == AGREE else -1) == community  # the answer is the argument's own side
            letters.add(letter)
        assert letters == {"A", "B"}  # the agree option is not always in one position
    assert not (out / "patients" / "stance_train.jsonl").exists()


def test_motion_table():
    assert side("We should legalize cannabis", 1) == PERMISSIVE
    assert side("We should legalize cannabis", -1) == PROTECTIVE
    assert side("We should ban naturopathy", 1) == PROTECTIVE
    assert side("Routine child vaccinations should be mandatory", -1) == PERMISSIVE
    assert side("We should abolish zoos", 1) is None


def test_passages_pack_and_filter():
    text = "short\n\n" + " ".join(f"w{i}" for i in range(400))
    out = passages(text, min_words=8, max_words=160)
    assert [len(p.split()) for p in out] == [160, 160, 80]  # "short" is too short on its own and dropped


def test_builder_errors(raw, tmp_path):
    with pytest.raises(ModPluralError, match="unknown community 'nurses'"):
        build_corpora(raw, tmp_path, ["nurses"])
    with pytest.raises(ModPluralError, match="raw corpus file missing: .*medquad/qa.jsonl"):
        build_corpora(_without(raw, tmp_path, "medquad/qa.jsonl"), tmp_path / "o", ["public_health_agencies"])
    empty = _without(raw, tmp_path / "e", "afrimed_qa/qa.jsonl")
    (empty / "afrimed_qa" / "qa.jsonl").write_text("")
    with pytest.raises(ModPluralError, match="corpus for 'african_clinicians' is too small"):
        build_corpora(empty, tmp_path / "o2", ["african_clinicians"])
    (empty / "afrimed_qa" / "qa.jsonl").write_text('{"sample_id": "x", "question": "q"\n')
    with pytest.raises(ModPluralError, match="qa.jsonl: line 1 is not valid JSON"):
        build_corpora(empty, tmp_path / "o3", ["african_clinicians"])


@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_bad_corpus_rows_name_the_file_and_line(name, tmp_path):
    from modplural.training.lora import train

    line, fragment = BAD_ROWS[name]
    corpora = write_corpus(tmp_path / "corpora", bad_train_line=line)
    config = load_train_config(PATIENTS, corpus_dir=str(corpora), output_dir=str(tmp_path / "{community}"), device="cpu")
    with pytest.raises(ModPluralError) as info:
        train(config, progress=False)
    assert str(info.value).startswith(f"{corpora / 'patients' / 'train.jsonl'}: {fragment}") and "\n" not in str(info.value)


def test_cli_bad_corpus_row_is_one_line(tmp_path):
    corpora = write_corpus(tmp_path / "corpora", bad_train_line=b'{"text": null}')
    result = run_cli("train", "--community", "patients", "--corpus-dir", str(corpora), "--output-dir", str(tmp_path / "{community}"), "--device", "cpu")
    assert_one_line_error(result, f"{corpora / 'patients' / 'train.jsonl'}: line 2: field 'text' is null, not a string")


@pytest.mark.parametrize("line, fragment", [
    ('{"question": "Is it safe?", "answer": "Caf\xe9"}'.encode("latin-1"), "qa.jsonl: line 2 is not UTF-8 text"),
    (b'["a", "list"]', "qa.jsonl: line 2 is not a JSON object"),
    (b'{"question": 5, "answer": "Rest."}', "qa.jsonl: line 2: field 'question' is 5, not a string"),
])
def test_bad_raw_jsonl_rows_name_the_file_and_line(line, fragment, tmp_path):
    raw = _raw_dir(tmp_path)
    good = json.dumps({"question": "What is asthma?", "answer": "A disease of the airways.", "url": "u"}).encode()
    (raw / "medquad" / "qa.jsonl").write_bytes(good + b"\n" + line + b"\n")
    with pytest.raises(ModPluralError, match=f"^{raw / 'medquad'}/{fragment}"):
        build_corpora(raw, tmp_path / "out", ["public_health_agencies"])


def test_raw_csv_that_is_not_utf8_names_the_file_and_line(tmp_path):
    raw = _raw_dir(tmp_path)
    rows = ["argument,topic,stance_WA,stance_WA_conf", *[f"argument {i},We should ban fast food,1,0.9" for i in range(3000)], "caf\xe9 au lait,We should ban fast food,1,0.9"]
    path = raw / "ibm_debater" / "arg_quality_rank_30k.csv"
    path.write_bytes("\n".join(rows).encode("latin-1"))  # the bad byte lies far beyond the first chunk the reader decodes
    with pytest.raises(ModPluralError, match=f"^{path}: line 3002 is not UTF-8 text$"):
        build_corpora(raw, tmp_path / "out", ["bioethics_protective"])

