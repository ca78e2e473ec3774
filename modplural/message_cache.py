"""On-disk SQLite cache of community messages, the expensive part of every mode.

A message is keyed by the identity of the weights that wrote it (base model + adapter hash), the exact
chat prompt and the decoding settings including the seed; a rerun with the same key reuses the text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from modplural.backends.base import GenerateRequest
from modplural.models import cache_dir


def default_cache_path() -> Path:
    return cache_dir() / "messages.sqlite"


class MessageCache:
    """A key -> text store; safe to share between processes (SQLite WAL) and threads."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS messages (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(identity: str, request: GenerateRequest) -> str:
        payload = {
            "identity": identity,
            "messages": request.messages,
            "prompt": request.prompt,
            "decoding": dataclasses.asdict(request.decoding),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        with self._lock:
            found: dict[str, str] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(f"SELECT key, text FROM messages WHERE key IN ({marks})", chunk).fetchall())
            return found

    def put_many(self, items: dict[str, str]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO messages (key, text) VALUES (?, ?)", list(items.items()))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
