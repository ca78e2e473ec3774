"""Experiments: a YAML config -> resumable per-item predictions (JSONL), a manifest and the metrics.

Layout of a run directory::

    manifest.json                     config, command, data file hashes, model and adapter identities, versions, machine
    predictions/<task>__<method>.jsonl one line per finished item, appended and flushed item by item
    metrics.json                      the papers' metrics with bootstrap 95% intervals, and paired comparisons

Killing a run and starting the same command again continues where it stopped: finished items are read
back and never recomputed; a line cut off by the kill is dropped and its item recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from modplural.backends.base import Decoding
from modplural.backends.batch_size import parse_batch_size
from modplural.backends.engines import check_engine, local_backend
from modplural.config_files import from_mapping, read_yaml
from modplural.data_paths import REPO_ROOT
from modplural.errors import ModPluralError
from modplural.metrics import paired_bootstrap
from modplural.methods import METHODS, NEEDS_POOL
from modplural.models import DEVICES, DTYPES
from modplural.tasks import TASKS, Item, Task, load_task
from modplural.validation import check_choice, check_count, finite_float

PRIMARY = "modular"


@dataclass(frozen=True)
class ExperimentConfig:
    """What to run: tasks x methods on one main model and community set."""

    name: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    main_model: str | None = None  # None: the communities' base model, shared in memory
    communities: tuple[str, ...] | None = None  # None: every registry community
    registry: str | None = None
    limit: int | None = None  # items per task
    sample: bool = False  # a seeded random sample of `limit` items instead of the first ones
    seed: int = 0
    batch_size: int | str = "auto"
    engine: str = "batched"  # or "sequential": the original's one-prompt-at-a-time pattern (for measurement)
    servers: str | None = None  # a servers YAML: communities (and the main LLM) on OpenAI-compatible servers
    chunk_size: int = 8  # items per batched method call (and per flush)
    message_tokens: int = 200
    message_temperature: float = 1.0
    message_top_p: float = 0.9
    main_tokens: int = 200
    scorer: str = "embedding"
    nli_model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    cache: bool = True

    def __post_init__(self) -> None:
        if not self.tasks or not self.methods:
            raise ModPluralError("a config needs at least one task and one method")
        for task in self.tasks:
            if task not in TASKS:
                raise ModPluralError(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
        for method in self.methods:
            if method not in METHODS:
                raise ModPluralError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
        if self.limit is not None and self.limit < 1:
            raise ModPluralError(f"limit must be at least 1, got {self.limit}")
        if self.chunk_size < 1:
            raise ModPluralError("chunk_size must be at least 1")
        parse_batch_size(self.batch_size)
        check_engine(self.engine)
        if self.scorer not in ("embedding", "nli"):
            raise ModPluralError(f"unknown scorer {self.scorer!r}: choose embedding or nli")
        check_count(self.message_tokens, "message_tokens")
        check_count(self.main_tokens, "main_tokens")
        if finite_float(self.message_temperature, "message_temperature") < 0:
            raise ModPluralError(f"message_temperature must be >= 0, got {self.message_temperature}")
        if not 0 < finite_float(self.message_top_p, "message_top_p") <= 1:
            raise ModPluralError(f"message_top_p must be in (0, 1], got {self.message_top_p}")
        check_choice(self.device, DEVICES, "device")
        check_choice(self.dtype, DTYPES, "dtype")

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def load_config(path: Path, **overrides) -> ExperimentConfig:
    data = read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_mapping(ExperimentConfig, data, str(path))


def select_items(items: list[Item], config: ExperimentConfig) -> list[Item]:
    if config.limit is None or config.limit >= len(items):
        return items
    if config.sample:
        return sorted(random.Random(config.seed).sample(items, config.limit), key=items.index)
    return items[: config.limit]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict:
    import peft
    import torch
    import transformers

    from modplural import __version__

    return {"modplural": __version__, "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "python": platform.python_version()}


def read_predictions(path: Path) -> list[dict]:
    """Finished records; a last line cut off by a kill is removed from the file (its item reruns)."""
    if not path.is_file():
        return []
    records, good_bytes = [], 0
    with path.open("rb") as f:
        for raw in f:
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("incomplete line")
                records.append(json.loads(raw))
            except ValueError:
                print(f"modplural: {path.name}: dropping an incomplete last line left by an interrupted run", file=sys.stderr)
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return records


class Experiment:
    """One run directory for one config; ``run`` fills it, resuming whatever is already there."""

    def __init__(self, config: ExperimentConfig, data_dir: Path, out_dir: Path, command: str | None = None) -> None:
        self.config, self.data_dir, self.out_dir = config, data_dir, out_dir
        self.command = command or " ".join(sys.argv)
        self.tasks: dict[str, tuple[Task, Path, list[Item], list[str]]] = {}
        for name in config.tasks:  # every item is validated before any model loads
            task, path, items, skipped = load_task(name, data_dir)
            self.tasks[name] = (task, path, select_items(items, config), skipped)

    def _check_manifest(self) -> dict:
        path = self.out_dir / "manifest.json"
        if path.is_file():
            manifest = json.loads(path.read_text())
            if manifest.get("config") != self.config.as_dict():
                raise ModPluralError(f"{self.out_dir} holds a run of another config; use a new --out directory")
            return manifest
        return {}

    def run(self, progress: bool = True) -> dict:
        previous = self._check_manifest()
        (self.out_dir / "predictions").mkdir(parents=True, exist_ok=True)
        methods, main_identity, pool, scorer = self._build()
        manifest = {
            "config": self.config.as_dict(),
            "command": self.command,
            "started": previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resumed": bool(previous),
            "git_commit": _git_commit(),
            "data": {name: {"file": str(path), "sha256": _sha256(path), "items_run": len(items), "left_out": skipped} for name, (_, path, items, skipped) in self.tasks.items()},
            "main_model": main_identity,
            "communities": {n: pool.backend.adapter_identity(n) for n in pool.names} if pool else {},
            "scorer": {"name": self.config.scorer, "identity": getattr(scorer, "identity", None), "proxy": getattr(scorer, "proxy", None)} if scorer else None,
            "versions": _versions(),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
        }
        self._write_json("manifest.json", manifest)
        for task_name, (task, _, items, _) in self.tasks.items():
            for method_name, method in methods.items():
                self._run_pair(task_name, task, items, method_name, method, scorer, progress)
        metrics = self.metrics()
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._write_json("manifest.json", manifest)
        return metrics

    def _build(self):
        from modplural.message_cache import MessageCache
        from modplural.methods import build_method
        from modplural.pool import CommunityPool
        from modplural.servers import load_servers

        c = self.config
        servers = load_servers(c.servers) if c.servers else None
        pool = None
        if NEEDS_POOL & set(c.methods):
            decoding = Decoding(max_new_tokens=c.message_tokens, temperature=c.message_temperature, top_p=c.message_top_p, seed=c.seed)
            pool = CommunityPool.from_registry(c.communities, c.registry, device=c.device, dtype=c.dtype, batch_size=c.batch_size, engine=c.engine,
                                               decoding=decoding, cache=MessageCache() if c.cache else None, servers=servers)
        if servers is not None and servers.main is not None:
            main = servers.backend(servers.main)
        elif pool is not None and c.main_model is None:
            main = pool.backend
        else:
            main = local_backend(c.main_model or "default", engine=c.engine, device=c.device, dtype=c.dtype, batch_size=c.batch_size)
        methods = {name: build_method(name, main, pool, Decoding(max_new_tokens=c.main_tokens)) for name in c.methods}
        scorer = None
        if any(task.needs_scorer for task, *_ in self.tasks.values()):
            from modplural.scorers import build_scorer

            scorer = build_scorer(c.scorer, c.nli_model)
        return methods, main.adapter_identity(None), pool, scorer

    def _run_pair(self, task_name: str, task: Task, items: list[Item], method_name: str, method, scorer, progress: bool) -> None:
        path = self.out_dir / "predictions" / f"{task_name}__{method_name}.jsonl"
        done = {r["id"] for r in read_predictions(path)}
        pending = [i for i in items if i.id not in done]
        print(f"{task_name} / {method_name}: {len(done)} items already done, {len(pending)} to run", file=sys.stderr, flush=True)
        if not pending:
            return
        bar = tqdm(total=len(items), initial=len(items) - len(pending), desc=f"{task_name}/{method_name}", disable=not progress, dynamic_ncols=True)
        with path.open("a") as out:
            for start in range(0, len(pending), self.config.chunk_size):
                chunk = pending[start : start + self.config.chunk_size]
                for item, result in zip(chunk, method.run(task.mode, [i.query for i in chunk])):
                    record = result.to_dict()
                    record.pop("main_prompts")
                    line = {"id": item.id, "task": task_name, "method": method_name, "result": record, "metrics": task.item_metrics(item, record, scorer)}
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                    bar.update(1)
        bar.close()

    def metrics(self) -> dict:
        """Metrics per task and method from the predictions on disk, plus paired comparisons with ``modular``."""
        out: dict = {"tasks": {}, "paired": {}}
        for task_name, (task, _, items, _) in self.tasks.items():
            per_method: dict[str, dict[str, dict]] = {}
            for method_name in self.config.methods:
                records = {r["id"]: r["metrics"] for r in read_predictions(self.out_dir / "predictions" / f"{task_name}__{method_name}.jsonl")}
                ordered = [i for i in items if i.id in records]
                if ordered:
                    out["tasks"].setdefault(task_name, {})[method_name] = task.aggregate(ordered, [records[i.id] for i in ordered])
                per_method[method_name] = {i.id: records[i.id] for i in ordered}
            out["paired"][task_name] = self._paired(task, per_method)
        self._write_json("metrics.json", out)
        return out

    def _paired(self, task: Task, per_method: dict[str, dict[str, dict]]) -> dict:
        if PRIMARY not in per_method:
            return {}
        key, higher_is_better = task.primary
        comparisons = {}
        for other, records in per_method.items():
            if other == PRIMARY:
                continue
            shared = [i for i in per_method[PRIMARY] if i in records]
            if len(shared) >= 2:
                a = [task.item_score(per_method[PRIMARY][i]) for i in shared]
                b = [task.item_score(records[i]) for i in shared]
                comparisons[f"{PRIMARY} - {other}"] = {"metric": key, "higher_is_better": higher_is_better, **paired_bootstrap(a, b)}
        return comparisons

    def _write_json(self, name: str, payload: dict) -> None:
        tmp = self.out_dir / f".{name}.tmp"
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, self.out_dir / name)
