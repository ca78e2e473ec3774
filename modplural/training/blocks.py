"""A community corpus read for a model: the rows of its JSONL files and the fixed-length token blocks that training
and perplexity read."""

from __future__ import annotations

from pathlib import Path

from modplural.errors import ModPluralError
from modplural.validation import jsonl_objects, jsonl_string


def read_passages(path: Path) -> list[str]:
    """The ``text`` of every row of a corpus JSONL file; errors name the file and line."""
    return [jsonl_string(path, line, row, "text") for line, row in _rows(path)]


def read_training_rows(path: Path) -> list[str | list[dict]]:
    """Every row of a training file: its ``text``, or its ``messages`` (a conversation of ``role`` / ``content``
    strings, to be rendered with the model's chat template); errors name the file and line."""
    return [_messages(path, line, row) if "messages" in row else jsonl_string(path, line, row, "text") for line, row in _rows(path)]


def _rows(path: Path):
    if not path.is_file():
        raise ModPluralError(f"corpus file missing: {path} (build it with `modplural corpus build`)")
    return jsonl_objects(path)


def _messages(path: Path, line: int, row: dict) -> list[dict]:
    """A row's ``messages``: a non-empty list of ``{"role": str, "content": str}``; else an error naming file and line."""
    messages = row["messages"]
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages):
        raise ModPluralError(f"{path}: line {line}: field 'messages' must be a non-empty list of {{\"role\": string, \"content\": string}}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def pack_blocks(texts: list[str], tokenizer, seq_len: int) -> list[list[int]]:
    """Concatenate tokenized passages (each followed by EOS) and cut them into full blocks of ``seq_len``."""
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []:
        stream.extend(ids + [tokenizer.eos_token_id])
    return [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]
