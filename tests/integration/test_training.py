"""The LoRA training recipe on the real default model: short runs, resumes, conversation rows, two processes, cards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from modplural.backends import GenerateRequest
from modplural.cli.training import write_card_after_training
from modplural.errors import ModPluralError
from modplural.training.config import load_train_config
from modplural.training.lora import train
from modplural.training.motions import PERMISSIVE
from tests.helpers import assert_one_line_error, run_cli, write_corpus

REPO = Path(__file__).resolve().parents[2]


def _tiny_config(corpora_dir: Path, out: Path, **overrides):
    values = dict(max_steps=4, seq_len=32, batch_size=2, warmup_steps=1, checkpoint_every=1, eval_blocks=2, learning_rate=0.01,
                  corpus_dir=str(corpora_dir), output_dir=str(out / "{community}"), device="cpu")
    values.update(overrides)
    return load_train_config(REPO / "training" / "configs" / "patients.yaml", **values)


def test_cli_corpus_build_prints_summary(raw, tmp_path):
    result = run_cli("corpus", "build", "--raw-dir", str(raw), "--out", str(tmp_path), "--communities", "patients,clinicians")
    assert result.returncode == 0, result.stderr
    assert "patients" in result.stdout and "tokens" in result.stdout
    assert_one_line_error(run_cli("corpus", "build", "--raw-dir", str(tmp_path / "none"), "--out", str(tmp_path)), "raw corpus directory not found")


def test_short_training_run_saves_reloads_and_changes_output(corpora, tmp_path):
    from modplural.backends import Decoding, OptionRequest
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


def test_two_process_accelerate_launch_trains_a_valid_adapter(corpora, tmp_path):
    """`accelerate launch --num_processes 2 --cpu` (gloo): both processes train, the main one saves a loadable adapter."""
    from modplural.backends import Decoding
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


@pytest.mark.slow
def test_retraining_replaces_our_adapter_with_its_card(tmp_path):
    """A real one-step run, twice into the same directory: the second adapter, manifest and card replace the first."""
    corpora = write_corpus(tmp_path / "corpora")
    config = load_train_config(REPO / "training" / "configs" / "patients.yaml", max_steps=1, seq_len=32, batch_size=2, eval_blocks=1,
                               corpus_dir=str(corpora), output_dir=str(tmp_path / "{community}"), device="cpu")
    first_adapter = train(config, progress=False)
    write_card_after_training("patients", first_adapter)  # as `modplural train` does once training returns
    first = json.loads((first_adapter / "training_manifest.json").read_text())["finished"]
    time.sleep(1.1)
    (tmp_path / "patients.old").mkdir()
    (tmp_path / "patients.old" / "keep.txt").write_text("mine")
    adapter = train(config, progress=False)
    assert json.loads((adapter / "training_manifest.json").read_text())["finished"] != first
    assert not (adapter / "README.md").exists()  # the first adapter's card went with it
    write_card_after_training("patients", adapter)
    assert sorted(p.name for p in adapter.iterdir()) == sorted(["README.md", "adapter_config.json", "adapter_model.safetensors", "training_manifest.json"])
    assert "| steps | 1 |" in (adapter / "README.md").read_text()
    assert (tmp_path / "patients.old" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpora", "patients", "patients.old"]


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

