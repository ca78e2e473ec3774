"""On-disk SQLite key -> text store of community messages, the expensive part of every mode, and of the main LLM's
answers. What goes in and under which key is ``modplural/backends/caching.py``'s: one wrapper serves both (a message is
a ``generate`` answer of a community's backend).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

from modplural.backends.base import Decoding
from modplural.errors import ModPluralError
from modplural.cache_files import cache_dir


def default_cache_path() -> Path:
    return cache_dir() / "messages.sqlite"


class MessageCache:
    """A key -> text store (messages, and main-LLM answers under their prefixes); safe to share between processes
    (SQLite WAL) and threads."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_cache_path()
        if self.path.is_dir():
            raise ModPluralError(f"message cache {self.path} is a directory, not a file: use another cache file (--cache, MODPLURAL_CACHE) or --no-cache")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModPluralError(f"message cache {self.path}: cannot create its directory ({exc})") from exc
        self._lock = threading.Lock()
        with self._errors():
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS messages (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
            self._db.commit()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite errors (a corrupt or unreadable file) as one-line errors naming the file; the file is left as it is."""
        try:
            yield
        except sqlite3.Error as exc:
            raise ModPluralError(
                f"message cache {self.path} is unusable ({exc}): move it away or use another cache file (--cache, MODPLURAL_CACHE) or --no-cache"
            ) from exc

    def get_many(self, keys: list[str]) -> dict[str, str]:
        with self._lock, self._errors():
            found: dict[str, str] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(f"SELECT key, text FROM messages WHERE key IN ({marks})", chunk).fetchall())
            return found

    def put_many(self, items: dict[str, str]) -> None:
        with self._lock, self._errors():
            self._db.executemany("INSERT OR REPLACE INTO messages (key, text) VALUES (?, ?)", list(items.items()))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock, self._errors():
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


# Decoding fields added after caches were first written: left out of the key at their defaults, so those caches stay valid.
_LATER_FIELDS = {"frequency_penalty": 0.0, "no_repeat_ngram": 0}


def digest(payload: dict) -> str:
    """The sha256 of ``payload`` as canonical JSON: a cache key."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def decoding_key(decoding: Decoding) -> dict:
    return {k: v for k, v in dataclasses.asdict(decoding).items() if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}
