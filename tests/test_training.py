"""Corpus builders on slices of the real raw corpora, and the LoRA training recipe on the real default model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from modplural.cli.training import write_card_after_training
from modplural.errors import ModPluralError
from modplural.training.config import load_train_config
from modplural.training.corpora import COMMUNITY_BUILDER, build_corpora, passages
from modplural.training.motions import PERMISSIVE, PROTECTIVE, side
from tests.helpers import assert_one_line_error, run_cli, slice_raw_corpora

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return slice_raw_corpora(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def corpora(raw, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpora")
    return out, build_corpora(raw, out)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


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


def _without(raw: Path, dest: Path, relative: str) -> Path:
    import shutil

    shutil.copytree(raw, dest / "raw", dirs_exist_ok=True)
    (dest / "raw" / relative).unlink()
    return dest / "raw"


def test_cli_corpus_build_prints_summary(raw, tmp_path):
    result = run_cli("corpus", "build", "--raw-dir", str(raw), "--out", str(tmp_path), "--communities", "patients,clinicians")
    assert result.returncode == 0, result.stderr
    assert "patients" in result.stdout and "tokens" in result.stdout
    assert_one_line_error(run_cli("corpus", "build", "--raw-dir", str(tmp_path / "none"), "--out", str(tmp_path)), "raw corpus directory not found")


# ----------------------------------------------------------------------------- training
def _tiny_config(corpora_dir: Path, out: Path, **overrides):
    values = dict(max_steps=4, seq_len=32, batch_size=2, warmup_steps=1, checkpoint_every=1, eval_blocks=2, learning_rate=0.01,
                  corpus_dir=str(corpora_dir), output_dir=str(out / "{community}"), device="cpu")
    values.update(overrides)
    return load_train_config(REPO / "training" / "configs" / "patients.yaml", **values)


def test_short_training_run_saves_reloads_and_changes_output(corpora, tmp_path):
    from modplural.backends import Decoding, GenerateRequest, OptionRequest
    from modplural.backends.local import LocalBackend
    from modplural.training.lora import train

    out, _ = corpora
    adapter = train(_tiny_config(out, tmp_path, max_steps=3), progress=False)
    assert not (adapter / "README.md").exists()  # training only trains; `modplural train` writes the card after it returns
    write_card_after_training("patients", adapter)
    manifest = json.loads((adapter / "training_manifest.json").read_text())
    assert manifest["steps"] == 3 and len(manifest["train_losses"]) == 3
    assert manifest["corpus"]["sha256_16"] and manifest["versions"]["peft"] and manifest["machine"]["cpu_count"]
    assert manifest["valid_loss"] < manifest["valid_loss_base"]
    assert not adapter.with_name("patients.partial").exists()
    card = (adapter / "README.md").read_text()  # the model card; no registry entry describes this tmp adapter
    assert "library_name: peft" in card and "| steps | 3 |" in card and "no registry entry" in card
    backend = LocalBackend("default", adapters={"patients": adapter}, device="cpu")
    question = [{"role": "user", "content": "How have you been feeling since your last visit?"}]
    texts = backend.generate([GenerateRequest(messages=question, adapter=a, decoding=Decoding(max_new_tokens=16)) for a in (None, "patients")])
    assert texts[0] != texts[1]
    probs = backend.option_probs([OptionRequest(labels=("A", "B"), prompt="Answer A or B:", adapter=a) for a in (None, "patients")])
    assert probs[0].probs != probs[1].probs


def test_training_on_conversation_rows_renders_them_with_the_chat_template(corpora, tmp_path):
    from modplural.training.blocks import read_training_rows
    from modplural.training.lora import train

    out, _ = corpora
    config = load_train_config(REPO / "training" / "configs" / "bioethics_permissive.yaml", max_steps=2, seq_len=32, batch_size=2,
                               checkpoint_every=1, eval_blocks=2, corpus_dir=str(out), output_dir=str(tmp_path / "{community}"),
                               device="cpu", train_files=["stance_train.jsonl"])
    adapter = train(config, progress=False)
    write_card_after_training(PERMISSIVE, adapter)
    manifest = json.loads((adapter / "training_manifest.json").read_text())
    examples = read_training_rows(out / PERMISSIVE / "stance_train.jsonl")
    assert manifest["corpus"]["train_files"] == ["stance_train.jsonl"] and manifest["corpus"]["train_passages"] == len(examples)
    assert all(isinstance(e, list) for e in examples)
    assert f"{len(examples)} training rows of stance_train.jsonl (conversation rows" in (adapter / "README.md").read_text()
    bad = tmp_path / "bad"
    (bad / PERMISSIVE).mkdir(parents=True)
    (bad / PERMISSIVE / "valid.jsonl").write_text('{"text": "a"}\n')
    for line, message in [('{"messages": [{"role": "user"}]}', "line 1: field 'messages' must be a non-empty list"),
                          ('{"messages": []}', "line 1: field 'messages'"), ('{"messages": "hi"}', "line 1: field 'messages'"),
                          ('{"source": "x"}', "line 1: missing field 'text'")]:
        (bad / PERMISSIVE / "stance_train.jsonl").write_text(line + "\n")
        with pytest.raises(ModPluralError, match=message):
            train(replace(config, corpus_dir=str(bad)), progress=False)
    with pytest.raises(ModPluralError, match="field 'train_files' must list file names"):
        replace(config, train_files=("../train.jsonl",))
    with pytest.raises(ModPluralError, match="field .train_files. must list file names"):
        replace(config, train_files=("..",))


def test_interrupted_run_resumes_from_its_checkpoint(corpora, tmp_path):
    from safetensors.torch import load_file

    from modplural.training.lora import train

    out, _ = corpora
    straight = train(_tiny_config(out, tmp_path / "straight"), progress=False)
    resumed_config = _tiny_config(out, tmp_path / "resumed")
    partial = train(resumed_config, progress=False, stop_after=2)
    assert json.loads((partial / "checkpoint" / "state.json").read_text())["step"] == 2
    assert not resumed_config.adapter_dir.exists()  # no half-written adapter where a finished one is expected
    resumed = train(resumed_config, progress=False)
    a, b = json.loads((straight / "training_manifest.json").read_text()), json.loads((resumed / "training_manifest.json").read_text())
    assert b["resumed_from_step"] == 2 and a["resumed_from_step"] == 0
    assert b["train_losses"] == pytest.approx(a["train_losses"], abs=1e-4)  # continued, not restarted
    wa, wb = load_file(str(straight / "adapter_model.safetensors")), load_file(str(resumed / "adapter_model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


@pytest.mark.slow
def test_killed_cli_run_resumes_and_keeps_the_old_adapter_until_done(corpora, tmp_path):
    """SIGKILL a real `modplural train` mid-run; the finished adapter from before stays intact; the rerun resumes."""
    out, _ = corpora
    args = ["train", "--community", "patients", "--corpus-dir", str(out), "--output-dir", str(tmp_path / "{community}"), "--device", "cpu"]
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "patients.yaml").write_text(
        f"extends: {REPO / 'training' / 'configs' / '_smollm2_cpu.yaml'}\ncommunity: patients\nseq_len: 32\nbatch_size: 2\nwarmup_steps: 1\ncheckpoint_every: 2\neval_blocks: 2\n"
    )
    first = run_cli(*args, "--config-dir", str(config_dir), "--max-steps", "2")
    assert first.returncode == 0, first.stderr
    old_weights = (tmp_path / "patients" / "adapter_model.safetensors").read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "modplural", *args, "--config-dir", str(config_dir), "--max-steps", "40", "--restart"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    state = tmp_path / "patients.partial" / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while not state.is_file() and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.is_file()
    step = json.loads(state.read_text())["step"]
    assert 2 <= step < 40
    assert (tmp_path / "patients" / "adapter_model.safetensors").read_bytes() == old_weights
    rerun = run_cli(*args, "--config-dir", str(config_dir), "--max-steps", "40")
    assert rerun.returncode == 0, rerun.stderr
    manifest = json.loads((tmp_path / "patients" / "training_manifest.json").read_text())
    assert manifest["resumed_from_step"] >= step and manifest["steps"] == 40


def test_training_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("community: patients\nlearning_rat: 0.1\n")
    with pytest.raises(ModPluralError, match="unknown field 'learning_rat'"):
        load_train_config(bad)
    bad.write_text("community: patients\nlearning_rate: -1\n")
    with pytest.raises(ModPluralError, match="learning_rate"):
        load_train_config(bad)
    bad.write_text("community: patients\nr: eight\n")
    with pytest.raises(ModPluralError, match="field 'r' has a bad value"):
        load_train_config(bad)


def test_training_cli_errors(tmp_path):
    assert_one_line_error(run_cli("train", "--community", "nurses"), "unknown community 'nurses'")
    assert_one_line_error(run_cli("train"), "--community NAME or --all")
    (tmp_path / "patients.yaml").write_text("community: patients\ndropout: 2\n")
    assert_one_line_error(run_cli("train", "--community", "patients", "--config-dir", str(tmp_path)), "dropout")
    (tmp_path / "patients.yaml").write_text(f"community: patients\ncorpus_dir: {tmp_path}\n")
    assert_one_line_error(run_cli("train", "--community", "patients", "--config-dir", str(tmp_path)), "corpus file missing")


def test_two_process_accelerate_launch_trains_a_valid_adapter(corpora, tmp_path):
    """`accelerate launch --num_processes 2 --cpu` (gloo): both processes train, the main one saves a loadable adapter."""
    from modplural.backends import Decoding, GenerateRequest
    from modplural.backends.local import LocalBackend
    from modplural.serving.llama_cpp import free_port

    out, _ = corpora
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "patients.yaml").write_text(
        f"extends: {REPO / 'training' / 'configs' / '_smollm2_cpu.yaml'}\ncommunity: patients\nseq_len: 32\nbatch_size: 2\nwarmup_steps: 1\ncheckpoint_every: 2\neval_blocks: 2\n"
    )
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "modplural", "train", "--community", "patients",
               "--config-dir", str(config_dir), "--corpus-dir", str(out), "--output-dir", str(tmp_path / "{community}"), "--device", "cpu", "--max-steps", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "patients" / "training_manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["steps"] == 2
    assert manifest["tokens_per_step"] == 2 * 2 * 32  # two processes, each a batch of 2 blocks of 32 tokens
    backend = LocalBackend("default", adapters={"patients": tmp_path / "patients"}, device="cpu")
    question = [{"role": "user", "content": "How are you feeling today?"}]
    texts = backend.generate([GenerateRequest(messages=question, adapter=a, decoding=Decoding(max_new_tokens=12)) for a in (None, "patients")])
    assert all(texts)

