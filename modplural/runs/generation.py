"""Generating a run: a config -> resumable per-item predictions (JSONL), a manifest, then the metrics. The only
module of ``runs/`` that imports the generation stack (``assembly``, methods, backends).

Killing a run and starting the same command again continues where it stopped: finished items are read back and
never recomputed; a line cut off by the kill is dropped and its item recomputed. With ``track`` set, the run is also
tracked in MLflow (``runs/tracking.py``), a resumed run in the same MLflow run. Fitted calibration priors and
community weights are stored in the run directory and given to the method explicitly (``with_priors``,
``with_weights``).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from modplural.assembly import StackSpec, assemble, message_decoding
from modplural.atomic_files import own_directory
from modplural.calibration import check_priors
from modplural.errors import ModPluralError
from modplural.learned_weights import check_learned
from modplural.method_protocols import NEEDS_POOL, USES_POOL
from modplural.methods import build_method
from modplural.protocol import Protocol
from modplural.provenance import file_sha256, git_commit, machine, versions
from modplural.runs.config import HOW_FIELDS, ExperimentConfig, recorded_protocol, same_config
from modplural.runs.plan import plan_run
from modplural.runs.scoring import score
from modplural.runs.tracking import open_tracker
from modplural.tasks import Item, Task

FALLBACK_CHUNK = 8  # items per call where no batch size says better (the sequential engine, servers)


def auto_chunk(pool) -> int:
    """Items per method call whose community messages fill one generation batch of the pool's engine (one message
    per community and item): decoding steps cost about as much with few rows as with many, so fuller batches finish a
    run sooner. ``FALLBACK_CHUNK`` where the engine has no batch size (or there is no pool)."""
    rows = getattr(pool.backend, "batch_rows", None) if pool is not None else None
    if rows is None:
        return FALLBACK_CHUNK
    return max(1, rows() // max(1, len(pool.names)))


class Experiment:
    """One run directory for one config; ``run`` fills it, resuming whatever is already there, and scores it."""

    def __init__(self, config: ExperimentConfig, data_dir: Path, out_dir: Path, command: str | None = None, protocol: Protocol | None = None) -> None:
        self.plan = plan_run(config, data_dir, out_dir, command, protocol)  # every item is validated before any model loads
        self.config, self.protocol, self.tasks = self.plan.config, self.plan.protocol, self.plan.tasks
        self.run_dir = self.plan.directory
        self.out_dir = self.run_dir.path

    def _check_manifest(self) -> dict:
        if self.run_dir.manifest_path.is_file():
            manifest = self.run_dir.manifest()
            if not same_config(manifest.get("config"), self.config):
                raise ModPluralError(f"{self.out_dir} holds a run of another config; use a new --out directory")
            recorded = recorded_protocol(manifest, str(self.run_dir.manifest_path))
            if recorded is not None and recorded.differences(self.protocol):
                changed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in recorded.differences(self.protocol).items() if k != "name")
                raise ModPluralError(f"{self.out_dir} holds a run under another protocol ({changed}: the protocol changed since); "
                                     "use a new --out directory, or score it as it is with `modplural score`")
            return manifest
        return {}

    def run(self, progress: bool = True) -> dict:
        created = not self.out_dir.exists()
        with self.run_dir.lock():
            previous = self._check_manifest()
            try:
                tracker = open_tracker(self.config.track, self.run_dir, HOW_FIELDS)  # its store reached before any model loads
                methods, main_identity, pool = self._build()
            except BaseException:
                if created:  # nothing was run: leave no directory behind
                    shutil.rmtree(self.out_dir, ignore_errors=True)
                raise
            own_directory(self.run_dir.predictions_dir)  # a link or a file there is refused before anything is written
            manifest = {
                "config": self.config.as_dict(),
                "protocol": self.protocol.as_dict(),
                "command": self.plan.command,
                "started": previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "resumed": bool(previous),
                "git_commit": git_commit(),
                "data": {name: {"file": str(path), "sha256": file_sha256(path), "items_run": len(items), "left_out": skipped,
                                **({"calibration_items": [i.id for i in self.plan.calibration[name]]} if name in self.plan.calibration else {})}
                         for name, (_, path, items, skipped) in self.tasks.items()},
                "main_model": main_identity,
                "communities": {n: pool.identity(n) for n in pool.names} if pool else {},
                "versions": versions(),
                "machine": machine(),
            }
            self.run_dir.write_json("manifest.json", manifest)
            if tracker is None:
                return self._generate(manifest, methods, pool, progress)
            tracker.start(manifest)
            with tracker.watch():
                metrics = self._generate(manifest, methods, pool, progress)
            tracker.finish(metrics)
            return metrics

    def _generate(self, manifest: dict, methods: dict, pool, progress: bool) -> dict:
        """Run every pending item, mark the manifest finished, and score."""
        chunk = self.config.chunk_size if self.config.chunk_size != "auto" else auto_chunk(pool)
        for task_name, (task, _, items, _) in self.tasks.items():
            for method_name, method in methods.items():
                self._run_pair(task_name, task, items, method_name, method, chunk, progress)
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.run_dir.write_json("manifest.json", manifest)
        return score(self.plan)

    def _build(self):
        c, p = self.config, self.protocol
        spec = StackSpec(model=c.main_model, communities=c.communities, registry=c.registry, servers=c.servers, engine=c.engine, device=c.device,
                         dtype=c.dtype, batch_size=c.batch_size, cache=c.cache, with_pool=bool(USES_POOL & set(c.methods)),
                         personas=c.communities_as == "personas" or not (NEEDS_POOL & set(c.methods)), decoding=message_decoding(p, c.seed, temperature=c.message_temperature, top_p=c.message_top_p),
                         packed_weights=c.packed_weights, main_weight_format=c.main_weight_format)
        main, pool = assemble(spec)
        methods = {name: build_method(name, main, pool, p, c.seed, c.ethos_perspectives) for name in c.methods}
        return methods, main.adapter_identity(None), pool

    def _run_pair(self, task_name: str, task: Task, items: list[Item], method_name: str, method, chunk_size: int, progress: bool) -> None:
        done = {r["id"] for r in self.run_dir.read_predictions(task_name, method_name, repair=True)}
        pending = [i for i in items if i.id not in done]
        print(f"{task_name} / {method_name}: {len(done)} items already done, {len(pending)} to run", file=sys.stderr, flush=True)
        if not pending:
            return
        if self.protocol.calibration == "split":
            method = method.with_priors(self._split_priors(task_name, task, method_name, method))
        if self.protocol.weights == "learned" and task.mode == "distributional" and hasattr(method, "fit_weights"):
            method = method.with_weights(self._learned_weights(task_name, method_name, method))
        bar = tqdm(total=len(items), initial=len(items) - len(pending), desc=f"{task_name}/{method_name}", disable=not progress, dynamic_ncols=True)
        with self.run_dir.appending_predictions(task_name, method_name) as append:
            for start in range(0, len(pending), chunk_size):
                chunk = pending[start : start + chunk_size]
                asked = [i for i in chunk if i.fixed is None]
                answers = dict(zip((i.id for i in asked), method.run(task.mode, [i.query for i in asked]))) if asked else {}
                for item in chunk:
                    if item.fixed is not None:
                        record = {"mode": task.mode, "method": method_name, "fixed": True, **item.fixed}
                    else:
                        record = answers[item.id].to_dict()
                        record.pop("main_prompts")
                    append({"id": item.id, "task": task_name, "method": method_name, "result": record})
                    bar.update(1)
        bar.close()

    def _split_priors(self, task_name: str, task: Task, method_name: str, method) -> dict[str, list[float]]:
        """The method's priors on this task: read back from calibration.json, or fitted on the calibration items
        (uncalibrated answers, cached like every answer) and stored there before any evaluated item runs."""
        stored = self.run_dir.read_json("calibration.json") if self.run_dir.calibration_path.is_file() else {}
        where = f"{self.run_dir.calibration_path}: {task_name} / {method_name}"
        if not isinstance(stored.get(task_name, {}), dict):
            raise ModPluralError(f"{self.run_dir.calibration_path}: {task_name}: expected an object of methods")
        entry = stored.get(task_name, {}).get(method_name)
        if entry is not None:
            if not isinstance(entry, dict):
                raise ModPluralError(f"{where}: expected an object with 'items' and 'priors'")
            return check_priors(entry.get("priors"), where)
        items = self.plan.calibration[task_name]
        print(f"{task_name} / {method_name}: fitting calibration priors on {len(items)} calibration items", file=sys.stderr, flush=True)
        priors = method.fit_priors(task.mode, [i.query for i in items])
        stored.setdefault(task_name, {})[method_name] = {"items": [i.id for i in items], "priors": priors}
        self.run_dir.write_json("calibration.json", stored)
        return priors

    def _learned_weights(self, task_name: str, method_name: str, method):
        """The method's learned weights on this task: read back from weights.json, or fitted on the calibration items'
        gold distributions (their answers cached like every answer) and stored there before any evaluated item runs."""
        path = self.run_dir.weights_path
        stored = self.run_dir.read_json(path.name) if path.is_file() else {}
        if not isinstance(stored.get(task_name, {}), dict):
            raise ModPluralError(f"{path}: {task_name}: expected an object of methods")
        entry = stored.get(task_name, {}).get(method_name)
        if entry is not None:
            return check_learned(entry, method.pool.names, f"{path}: {task_name} / {method_name}")
        items = self.plan.calibration[task_name]
        print(f"{task_name} / {method_name}: fitting community weights on {len(items)} calibration items", file=sys.stderr, flush=True)
        learned = method.fit_weights([i.query for i in items], [i.gold["distribution"] for i in items], [i.id for i in items])
        stored.setdefault(task_name, {})[method_name] = learned.as_dict()
        self.run_dir.write_json(path.name, stored)
        return learned
