"""Training inputs that used to end in tracebacks or refusals: corpus files that are not UTF-8 or whose rows are
not text, a --max-steps below the recipe's warm-up, and an --output-dir with an unknown placeholder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modplural.errors import ModPluralError
from modplural.training.config import load_train_config
from modplural.training.corpora import build_corpora
from tests.helpers import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[1]
PATIENTS = REPO / "training" / "configs" / "patients.yaml"
PARTS = ["knee", "back", "shoulder", "stomach", "head", "chest", "ankle"]
ACTIVITIES = ["climb the stairs", "sleep on my side", "walk to work", "lift my grandson", "sit at my desk"]


def _passage(i: int) -> str:
    part, activity = PARTS[i % len(PARTS)], ACTIVITIES[i % len(ACTIVITIES)]
    return (f"My {part} has hurt for {i % 9 + 1} days and the pain gets worse when I {activity}. I take the tablets twice a day "
            f"but they do not help much, and I worry that it is something serious. Should I see a specialist, or wait another week?")


def write_corpus(root: Path, train_rows: int = 60, valid_rows: int = 4, bad_train_line: bytes | None = None) -> Path:
    """A small patients corpus under ``root/patients``; ``bad_train_line`` becomes line 2 of train.jsonl."""
    corpus = root / "patients"
    corpus.mkdir(parents=True)
    lines = [json.dumps({"text": _passage(i), "source": "tests", "doc_id": f"d{i}"}).encode() for i in range(train_rows)]
    if bad_train_line is not None:
        lines.insert(1, bad_train_line)
    (corpus / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (corpus / "valid.jsonl").write_text("".join(json.dumps({"text": _passage(1000 + i)}) + "\n" for i in range(valid_rows)))
    return root


BAD_ROWS = {
    "latin-1": ('{"text": "caf\xe9 au lait"}'.encode("latin-1"), "line 2 is not UTF-8 text"),
    "number": (b'{"text": 123}', "line 2: field 'text' is 123, not a string"),
    "null": (b'{"text": null}', "line 2: field 'text' is null, not a string"),
    "missing": (b'{"body": "hello"}', "line 2: missing field 'text'"),
    "list": (b'["hello"]', "line 2 is not a JSON object"),
    "broken": (b'{"text": "hel', "line 2 is not valid JSON"),
}


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


def _raw_dir(tmp_path: Path) -> Path:
    (tmp_path / "raw" / "medquad").mkdir(parents=True)
    (tmp_path / "raw" / "ibm_debater").mkdir(parents=True)
    return tmp_path / "raw"


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


# ----------------------------------------------------------------------------- --max-steps below the warm-up
def test_max_steps_below_the_warmup_lowers_the_warmup(capsys):
    config = load_train_config(PATIENTS, max_steps=2)  # the shipped recipe warms up for 10 steps
    assert (config.max_steps, config.warmup_steps) == (2, 1)
    assert capsys.readouterr().err == f"modplural: note: {PATIENTS}: warmup_steps 10 lowered to 1 for max_steps 2\n"
    assert load_train_config(PATIENTS, max_steps=2, warmup_steps=0).warmup_steps == 0  # an explicit warm-up is kept
    assert load_train_config(PATIENTS, max_steps=1).warmup_steps == 0
    assert load_train_config(PATIENTS, max_steps=40).warmup_steps == 10
    assert capsys.readouterr().err.count("modplural: note:") == 1  # only max_steps=1 needed it


def test_a_config_file_whose_warmup_is_too_long_is_still_an_error(tmp_path):
    path = tmp_path / "patients.yaml"
    path.write_text(f"extends: {REPO / 'training' / 'configs' / '_smollm2_cpu.yaml'}\ncommunity: patients\nmax_steps: 5\n")
    with pytest.raises(ModPluralError, match=r"warmup_steps' must be in \[0, max_steps\), got 10"):
        load_train_config(path)
    with pytest.raises(ModPluralError, match=r"warmup_steps' must be in \[0, max_steps\), got 3"):
        load_train_config(path, max_steps=2, warmup_steps=3)


@pytest.mark.slow
def test_cli_trains_two_steps_with_the_shipped_recipe(tmp_path):
    """`modplural train --community patients --max-steps 2` on the shipped config (warm-up 10), a real tiny run."""
    corpora = write_corpus(tmp_path / "corpora")
    result = run_cli("train", "--community", "patients", "--max-steps", "2", "--corpus-dir", str(corpora), "--output-dir", str(tmp_path / "{community}"),
                     "--device", "cpu", env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warmup_steps 10 lowered to 1 for max_steps 2" in result.stderr
    manifest = json.loads((tmp_path / "patients" / "training_manifest.json").read_text())
    assert manifest["steps"] == 2 and len(manifest["train_losses"]) == 2 and manifest["config"]["warmup_steps"] == 1
    assert (tmp_path / "patients" / "adapter_model.safetensors").is_file()


# ----------------------------------------------------------------------------- --output-dir placeholders
@pytest.mark.parametrize("output_dir", ["out/{name}", "out/{0}", "out/{community", "out/{community.upper}"])
def test_unknown_output_dir_placeholder_is_a_config_error(output_dir):
    with pytest.raises(ModPluralError, match=r"field 'output_dir' .* has a placeholder other than \{community\}"):
        load_train_config(PATIENTS, output_dir=output_dir)
    assert load_train_config(PATIENTS, output_dir="out/{{literal}}/{community}").adapter_dir.parts[-2:] == ("{literal}", "patients")


def test_cli_unknown_output_dir_placeholder_fails_before_the_model_loads(tmp_path):
    corpora = write_corpus(tmp_path / "corpora")
    configs = tmp_path / "configs"
    configs.mkdir()
    # a base model that cannot load: the error must come from the output directory, found first
    (configs / "patients.yaml").write_text(f"extends: {REPO / 'training' / 'configs' / '_smollm2_cpu.yaml'}\ncommunity: patients\nbase_model: {tmp_path / 'no-model'}\n")
    result = run_cli("train", "--community", "patients", "--config-dir", str(configs), "--corpus-dir", str(corpora),
                     "--output-dir", str(tmp_path / "{name}"), "--device", "cpu")
    assert_one_line_error(result, "field 'output_dir'", "{name}", "has a placeholder other than {community}")
