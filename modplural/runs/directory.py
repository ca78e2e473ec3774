"""One object owns a run directory: its paths, reading it (strictly), writing it (JSON atomically, predictions
appended line by line), and its lock.

Layout::

    manifest.json                      config, protocol, command, data file hashes, identities, versions, machine
    predictions/<task>__<method>.jsonl one line per finished item ({"id", "task", "method", "result"}), flushed item by item
    metrics.json                       the papers' metrics with bootstrap 95% intervals and paired comparisons
    metrics.<scorer>.json              the same, re-scored with another Overton scorer (``modplural score --scorer``)
    metrics.raw.json, scores.raw.json  calibration on: the option tasks scored on the raw (uncalibrated) distributions
    calibration.json                   calibration split: per task and method, the calibration items and their priors
    weights.json                       weights learned: per task and method, the fitted community weights and temperature
    scores.json                        per-item metrics behind metrics.json (task -> method -> item id -> numbers)
    report.md, plots/                  ``modplural report`` (and a tracked run, at its end)
    tracking.json                      a tracked run (``track: mlflow``): its MLflow store, experiment and run id
    .lock                              held by a running ``modplural run`` (its pid inside)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

from modplural.atomic_files import open_own, own_directory, write_atomic
from modplural.errors import ModPluralError
from modplural.json_files import parse_json, read_json


class RunDir:
    """Paths of a run directory and the only code that reads or writes its files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ----------------------------------------------------------------- paths
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def predictions_dir(self) -> Path:
        return self.path / "predictions"

    def predictions_path(self, task: str, method: str) -> Path:
        return self.predictions_dir / f"{task}__{method}.jsonl"

    @property
    def calibration_path(self) -> Path:
        return self.path / "calibration.json"

    @property
    def weights_path(self) -> Path:
        return self.path / "weights.json"

    @property
    def tracking_path(self) -> Path:
        return self.path / "tracking.json"

    def metrics_path(self, scorer_suffix: str | None = None) -> Path:
        return self.path / (f"metrics.{scorer_suffix}.json" if scorer_suffix else "metrics.json")

    def scores_path(self, scorer_suffix: str | None = None) -> Path:
        return self.path / (f"scores.{scorer_suffix}.json" if scorer_suffix else "scores.json")

    # ----------------------------------------------------------------- reading
    def read_json(self, name: str) -> dict:
        return read_json(self.path / name, dict, f"{self.path} has no {name}: not a run directory, or the run has not started (run `modplural run` first)")

    def manifest(self) -> dict:
        return self.read_json("manifest.json")

    def read_predictions(self, task: str, method: str, repair: bool = False) -> list[dict]:
        """Finished records of one task and method.

        A line cut off by a kill can only be the last one: with ``repair`` (``modplural run``) it is removed and its
        item reruns; otherwise it is an error (the run is unfinished). A bad line before the last is always an error
        naming the file and line: nothing after it is ever dropped.
        """
        path = self.predictions_path(task, method)
        if not path.is_file():
            return []
        data = path.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop()  # after the last newline: b"" when the file ends cleanly
        records = []
        for number, raw in enumerate(lines, 1):
            records.append(_record(path, number, raw))
        if torn:
            if not repair:
                raise ModPluralError(f"{path}: line {len(lines) + 1} is incomplete (an interrupted run): run `modplural run` again to finish it")
            print(f"modplural: {path.name}: dropping an incomplete last line left by an interrupted run", file=sys.stderr)
            with open_own(path, "a") as f:
                f.truncate(len(data) - len(torn))
        return records

    # ----------------------------------------------------------------- writing
    def write_json(self, name: str, payload: dict) -> Path:
        """Write ``name`` atomically (a temporary file renamed into place)."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False)
        except ValueError as exc:  # NaN or an infinity: never written into a file we produce
            raise ModPluralError(f"{self.path / name}: refusing to write a non-finite number ({exc}); a prediction or setting upstream is not a number") from exc
        return write_atomic(self.path / name, text + "\n")

    @contextlib.contextmanager
    def appending_predictions(self, task: str, method: str) -> Iterator[Callable[[dict], None]]:
        """A writer of finished records of one task and method: each is appended as one line, flushed and fsynced
        before the next (so a kill loses at most the line being written, which ``read_predictions`` repairs)."""
        own_directory(self.predictions_dir)
        with open_own(self.predictions_path(task, method), "a") as out:
            def append(record: dict) -> None:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
                os.fsync(out.fileno())

            yield append

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory for one ``modplural run``; a second one fails at once naming the holder's pid."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open_own(self.path / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ModPluralError(f"{self.path} is in use by another modplural run (pid {holder}); wait for it or use another --out") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _record(path: Path, number: int, raw: bytes) -> dict:
    try:
        record = parse_json(raw, f"{path}: line {number}", one_line=True)
    except ModPluralError as exc:
        raise ModPluralError(f"{exc}; fix or remove that line, nothing after it is dropped") from exc
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not isinstance(record.get("result"), dict):
        raise ModPluralError(f"{path}: line {number} is not a prediction record (needs a string 'id' and a 'result' object)")
    return record
