"""Shared fixtures: the real embedded default model and two small LoRA adapters made on it."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network; subprocesses inherit this
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# SmolLM2-135M (the communities' base, shared in memory) is the main LLM of every test that names none: most tests
# check mechanics, not answers. The tests of the offline 1.5B main LLM name it, or drop this variable.
os.environ["MODPLURAL_MAIN_MODEL"] = "default"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import make_random_adapter  # noqa: E402


@pytest.fixture
def loaded():
    """A fresh copy of the default model (about a second from the safetensors cache)."""
    from modplural.models import load_model

    return load_model("default", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory) -> dict[str, Path]:
    """Two LoRA adapters with random (non-zero) weights, so each one changes the model's output."""
    root = tmp_path_factory.mktemp("adapters")
    return {name: make_random_adapter(root / name, seed=i) for i, name in enumerate(["alpha", "beta"])}


@pytest.fixture(scope="session")
def backend(adapter_dirs):
    """The default model with both adapters, shared by the tests that only read from it."""
    from modplural.backends.local import LocalBackend

    return LocalBackend("default", adapters=adapter_dirs, device="cpu", dtype="float32", batch_size=8)


@pytest.fixture(scope="session")
def tiny_nli(tmp_path_factory) -> Path:
    """A small randomly initialised MNLI-style classifier, with the BERT tokenizer of all-MiniLM-L6-v2."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from modplural.scorers import EmbeddingScorer

    path = tmp_path_factory.mktemp("nli")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        num_labels=3, id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}, label2id={"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2})
    BertForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(EmbeddingScorer._packaged_model()).save_pretrained(path)
    return path
