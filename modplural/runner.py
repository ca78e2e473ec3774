"""Experiments: a YAML config -> resumable per-item predictions (JSONL), a manifest and the metrics.

Generation and scoring are apart (as inspect_ai re-scores a saved log): ``Experiment.run`` writes predictions and
then calls ``Experiment.score``, which ``modplural score RUN`` also calls on a finished run directory without
loading the generator. ``RunDir`` (``modplural/run_dir.py``) owns the directory's paths and reading.

Killing a run and starting the same command again continues where it stopped: finished items are read
back and never recomputed; a line cut off by the kill is dropped and its item recomputed. With ``track`` set, the run
is also tracked in MLflow (``modplural/tracking.py``), a resumed run in the same MLflow run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from modplural.assembly import StackSpec, assemble, check_engine, message_decoding
from modplural.atomic_files import open_own, own_directory
from modplural.backends.batch_size import parse_batch_size
from modplural.calibration import check_priors
from modplural.config_files import from_mapping, read_yaml
from modplural.errors import ModPluralError
from modplural.learned_weights import check_learned
from modplural.metrics import paired_bootstrap
from modplural.methods import METHODS, NEEDS_POOL, USES_POOL, build_method, check_method
from modplural.methods.ethos import DEFAULT_PERSPECTIVES, check_perspectives
from modplural.models import DEVICES, DTYPES, WEIGHT_FORMATS
from modplural.protocol import Protocol, resolve_protocol
from modplural.provenance import file_sha256, git_commit, versions
from modplural.run_dir import RunDir
from modplural.scorers import SCORERS
from modplural.tasks import TASKS, Item, Task, load_task
from modplural.validation import check_choice, check_count, check_distribution, finite_float
from modplural.seeds import seeded_key
from modplural.tracking import open_tracker, parse_tracking

PRIMARY = "modular"
# Config fields that change how items are grouped into calls and batches, which kernel multiplies, or where the run is
# also tracked, not what is computed (every sampled request has its own seed; only the order of float summation moves),
# so a run may be resumed with other values, and a manifest written before one of them existed still matches.
HOW_FIELDS = ("chunk_size", "batch_size", "packed_weights", "track")
COMMUNITY_FORMS = ("adapters", "personas")
FALLBACK_CHUNK = 8  # items per call where no batch size says better (the sequential engine, servers)


@dataclass(frozen=True)
class ExperimentConfig:
    """What to run: tasks x methods on one main model and community set."""

    name: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    main_model: str | None = None  # None: a servers file's main, else MODPLURAL_MAIN_MODEL or the offline 1.5B (modplural/assembly.py)
    main_weight_format: str = "auto"  # the main LLM's weights: auto (int8 on a CPU in float32), float or int8
    communities: tuple[str, ...] | None = None  # None: every registry community
    registry: str | None = None
    limit: int | None = None  # items per task
    sample: bool = False  # a seeded random sample of `limit` items instead of the first ones
    seed: int = 0
    batch_size: int | str = "auto"
    engine: str = "batched"  # or "sequential": the original's one-prompt-at-a-time pattern (for measurement)
    servers: str | None = None  # a servers YAML: communities (and the main LLM) on OpenAI-compatible servers
    chunk_size: int | str = "auto"  # items per batched method call (and per flush); auto: as many as fill one batch of community messages
    protocol: str | dict = "modplural"  # "original", "modplural", or {base: NAME, switch: value, ...}
    message_tokens: int | None = None  # None: the protocol's (200); a number overrides it (recorded in the protocol's name)
    message_temperature: float = 1.0
    message_top_p: float = 0.9
    main_tokens: int | None = None  # None: the protocol's (200); a number overrides main_tokens and steer_tokens
    scorer: str = "embedding"
    nli_model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    cache: bool = True
    ethos_perspectives: int = DEFAULT_PERSPECTIVES  # the ethos method's perspectives per query
    calibration_items: int = 20  # calibration split / weights learned: items per task, outside the evaluated ones, to fit priors / weights on
    packed_weights: bool = True  # batched engine on a CPU in float32: oneDNN-prepacked linear weights (false: the plain kernel)
    communities_as: str = "adapters"  # or "personas": every community as its persona on the main LLM, no adapters loaded
    track: str | dict | None = None  # mlflow, or {kind: mlflow, uri: URI, experiment: NAME}: the run tracked in MLflow (modplural/tracking.py)

    def __post_init__(self) -> None:
        if not self.tasks or not self.methods:
            raise ModPluralError("a config needs at least one task and one method")
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", self.name):
            raise ModPluralError(f"name must be a plain name (letters, digits, '.', '_', '-'; it names the run directory runs/<name>), got {self.name!r}")
        if self.communities is not None and not self.communities:
            raise ModPluralError("communities is empty: name at least one community, or null for every registry community")
        for task in self.tasks:
            if task not in TASKS:
                raise ModPluralError(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
        for method in self.methods:
            if method not in METHODS:
                raise ModPluralError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
        if self.limit is not None and self.limit < 1:
            raise ModPluralError(f"limit must be at least 1, got {self.limit}")
        if self.chunk_size != "auto" and (type(self.chunk_size) is not int or self.chunk_size < 1):
            raise ModPluralError(f"chunk_size must be a positive integer or 'auto', got {self.chunk_size!r}")
        parse_batch_size(self.batch_size)
        if type(self.packed_weights) is not bool:
            raise ModPluralError(f"packed_weights must be true or false, got {self.packed_weights!r}")
        check_engine(self.engine)
        if self.scorer not in SCORERS:
            raise ModPluralError(f"unknown scorer {self.scorer!r}: choose {' or '.join(SCORERS)}")
        if self.message_tokens is not None:
            check_count(self.message_tokens, "message_tokens")
        if self.main_tokens is not None:
            check_count(self.main_tokens, "main_tokens")
        if finite_float(self.message_temperature, "message_temperature") < 0:
            raise ModPluralError(f"message_temperature must be >= 0, got {self.message_temperature}")
        if not 0 < finite_float(self.message_top_p, "message_top_p") <= 1:
            raise ModPluralError(f"message_top_p must be in (0, 1], got {self.message_top_p}")
        check_choice(self.device, DEVICES, "device")
        check_choice(self.dtype, DTYPES, "dtype")
        check_choice(self.main_weight_format, WEIGHT_FORMATS, "main_weight_format")
        check_choice(self.communities_as, COMMUNITY_FORMS, "communities_as")
        check_perspectives(self.ethos_perspectives)
        check_count(self.calibration_items, "calibration_items")
        parse_tracking(self.track)
        protocol = self.resolved_protocol()
        for method in self.methods:
            check_method(method, protocol)

    def resolved_protocol(self) -> Protocol:
        """The protocol with this config's token overrides folded in."""
        overrides: dict = {}
        if self.message_tokens is not None:
            overrides["message_tokens"] = self.message_tokens
        if self.main_tokens is not None:
            overrides["main_tokens"] = self.main_tokens
            if resolve_protocol(self.protocol).steer_tokens == resolve_protocol("modplural").steer_tokens:
                overrides["steer_tokens"] = self.main_tokens
        return resolve_protocol({"base": resolve_protocol(self.protocol), **overrides}) if overrides else resolve_protocol(self.protocol)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def auto_chunk(pool) -> int:
    """Items per method call whose community messages fill one generation batch of the pool's engine (one message
    per community and item): decoding steps cost about as much with few rows as with many, so fuller batches finish a
    run sooner. ``FALLBACK_CHUNK`` where the engine has no batch size (or there is no pool)."""
    rows = getattr(pool.backend, "batch_rows", None) if pool is not None else None
    if rows is None:
        return FALLBACK_CHUNK
    return max(1, rows() // max(1, len(pool.names)))


def _without(config, fields: tuple[str, ...]):
    return {k: v for k, v in config.items() if k not in fields} if isinstance(config, dict) else config


def _same_config(recorded, config: ExperimentConfig) -> bool:
    """Whether a manifest's config is ``config``, up to HOW_FIELDS; a field added since the run was recorded
    matches when ``config`` leaves it at its default (what the recorded run did)."""
    if not isinstance(recorded, dict):
        return False
    defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}
    current = {k: v for k, v in config.as_dict().items() if k in recorded or v != defaults.get(k)}
    return _without(recorded, HOW_FIELDS) == _without(current, HOW_FIELDS)


def load_config(path: Path, **overrides) -> ExperimentConfig:
    data = read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_mapping(ExperimentConfig, data, str(path))


def select_items(items: list[Item], config: ExperimentConfig) -> list[Item]:
    """The first ``limit`` items, or with ``sample`` the ``limit`` items whose seeded hash of the id is lowest: an item
    is picked or not whatever else is in the pool, so protocols that keep different items still share their picks."""
    if config.limit is None or config.limit >= len(items):
        return items
    if config.sample:
        rank = {i.id: seeded_key(config.seed, i.id) for i in items}
        chosen = set(sorted(rank, key=rank.get)[: config.limit])
        return [i for i in items if i.id in chosen]
    return items[: config.limit]


def needs_calibration_items(protocol: Protocol, task: Task) -> bool:
    """Whether a run under ``protocol`` fits something on ``task``'s calibration items (split priors; learned weights,
    which only distributional tasks use)."""
    return protocol.calibration == "split" or (protocol.weights == "learned" and task.mode == "distributional")


def select_calibration_items(items: list[Item], chosen: list[Item], config: ExperimentConfig) -> list[Item]:
    """Calibration items (calibration split, learned weights): ``calibration_items`` items outside ``chosen``, picked
    the way ``select_items`` picks (the next lowest seeded hashes, or the next items in file order), so they never
    overlap the evaluated ones."""
    taken = {i.id for i in chosen}
    rest = [i for i in items if i.id not in taken and i.query is not None]
    if not rest:
        raise ModPluralError("calibration items (calibration split, weights learned) must lie outside the evaluated ones: set a limit below the task's size")
    if config.sample:
        rest.sort(key=lambda i: seeded_key(config.seed, i.id))
    return rest[: config.calibration_items]


def _recorded_protocol(manifest: dict, where: str) -> Protocol | None:
    """The protocol a run's manifest recorded (a switch added since then has its original value; ``ethos``, added
    after ethos ran under modplural prompts, has the value such a run used: released under original prompts, where
    ethos could not run, else modplural), if any."""
    recorded = manifest.get("protocol")
    if recorded is None:  # recorded before protocols existed
        return None
    if not isinstance(recorded, dict):
        raise ModPluralError(f"{where}: 'protocol' must be an object of switches, got {type(recorded).__name__} {str(recorded)[:40]!r}")
    if "ethos" not in recorded:
        recorded = {**recorded, "ethos": "released" if recorded.get("prompts") == "original" else "modplural"}
    return from_mapping(Protocol, recorded, f"{where}: protocol")


def _checked(result: dict, item: Item, where: Path) -> dict:
    """``result`` with its distribution checked (finite, non-negative, not all zero, one number per option) where the
    item has options; a damaged prediction is a one-line error naming the file and item."""
    options = item.query.options if item.query is not None else (item.fixed or {}).get("options")
    if not options:
        return result  # Overton, or a free-text steerable answer (steerable_answer: parse)
    distribution = check_distribution(result.get("distribution"), len(options), f"{where}: item {item.id}: 'distribution'")
    return {**result, "distribution": distribution}


def _raw(result: dict) -> dict:
    """A prediction with its raw (uncalibrated) distribution in place of the calibrated one, where it has one."""
    return {**result, "distribution": result["raw_distribution"]} if result.get("raw_distribution") is not None else result


class Experiment:
    """One run directory for one config; ``run`` fills it, resuming whatever is already there; ``score`` scores it."""

    def __init__(self, config: ExperimentConfig, data_dir: Path, out_dir: Path, command: str | None = None, protocol: Protocol | None = None) -> None:
        self.config, self.data_dir = config, data_dir
        self.run_dir = RunDir(out_dir)
        self.out_dir = self.run_dir.path
        self.protocol = protocol or config.resolved_protocol()
        self.command = command or " ".join(sys.argv)
        self.tasks: dict[str, tuple[Task, Path, list[Item], list[str]]] = {}
        self.calibration_items: dict[str, list[Item]] = {}
        for name in config.tasks:  # every item is validated before any model loads
            task, path, items, skipped = load_task(name, data_dir, self.protocol)
            if not items:
                why = f"all {len(skipped)} of its items are skipped under this protocol" if skipped else "it holds no items"
                raise ModPluralError(f"{path}: nothing to run for {name}: {why}")
            self.tasks[name] = (task, path, select_items(items, config), skipped)
            if needs_calibration_items(self.protocol, task):
                self.calibration_items[name] = select_calibration_items(items, self.tasks[name][2], config)

    @classmethod
    def from_run_dir(cls, run_dir: Path, data_dir: Path) -> "Experiment":
        """The experiment a finished run directory holds, under the protocol its manifest recorded (a switch added
        since then has its original value, which is what such a run did), its data checked against the manifest's hashes."""
        manifest = RunDir(run_dir).manifest()
        where = str(RunDir(run_dir).manifest_path)
        if not isinstance(manifest.get("config"), dict):
            raise ModPluralError(f"{where}: no config in the manifest")
        config = from_mapping(ExperimentConfig, manifest["config"], where)
        if not isinstance(manifest.get("data", {}), dict) or not all(isinstance(v, dict) for v in manifest.get("data", {}).values()):
            raise ModPluralError(f"{where}: 'data' must be an object of per-task file records")
        experiment = cls(config, data_dir, run_dir, manifest.get("command"), _recorded_protocol(manifest, where))
        for name, (_, path, _, _) in experiment.tasks.items():
            recorded = manifest.get("data", {}).get(name, {}).get("sha256")
            if recorded != file_sha256(path):
                raise ModPluralError(f"{path} differs from the file this run used (sha256 {str(recorded)[:12]}...); pass the --data-dir the run used")
        return experiment

    def _check_manifest(self) -> dict:
        if self.run_dir.manifest_path.is_file():
            manifest = self.run_dir.manifest()
            if not _same_config(manifest.get("config"), self.config):
                raise ModPluralError(f"{self.out_dir} holds a run of another config; use a new --out directory")
            recorded = _recorded_protocol(manifest, str(self.run_dir.manifest_path))
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
            own_directory(self.run_dir.predictions_dir)
            manifest = {
                "config": self.config.as_dict(),
                "protocol": self.protocol.as_dict(),
                "command": self.command,
                "started": previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "resumed": bool(previous),
                "git_commit": git_commit(),
                "data": {name: {"file": str(path), "sha256": file_sha256(path), "items_run": len(items), "left_out": skipped,
                                **({"calibration_items": [i.id for i in self.calibration_items[name]]} if name in self.calibration_items else {})}
                         for name, (_, path, items, skipped) in self.tasks.items()},
                "main_model": main_identity,
                "communities": {n: pool.identity(n) for n in pool.names} if pool else {},
                "versions": versions(),
                "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
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
        return self.score()

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
        path = self.run_dir.predictions_path(task_name, method_name)
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
        with open_own(path, "a") as out:
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
                    out.write(json.dumps({"id": item.id, "task": task_name, "method": method_name, "result": record}, ensure_ascii=False) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
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
        items = self.calibration_items[task_name]
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
        items = self.calibration_items[task_name]
        print(f"{task_name} / {method_name}: fitting community weights on {len(items)} calibration items", file=sys.stderr, flush=True)
        learned = method.fit_weights([i.query for i in items], [i.gold["distribution"] for i in items], [i.id for i in items])
        stored.setdefault(task_name, {})[method_name] = learned.as_dict()
        self.run_dir.write_json(path.name, stored)
        return learned

    def score(self, scorer_name: str | None = None, nli_model: str | None = None) -> dict:
        """Metrics per task and method from the stored predictions (no generator is loaded), plus paired comparisons
        with ``modular``. Writes metrics.json and scores.json, or metrics.<scorer>.json with another Overton scorer."""
        scorer_name = scorer_name or self.config.scorer
        suffix = None if scorer_name == self.config.scorer and (nli_model is None or nli_model == self.config.nli_model) else scorer_name
        manifest = self.run_dir.manifest()
        if "finished" not in manifest:
            raise ModPluralError(f"{self.out_dir}: the run is unfinished (no 'finished' in manifest.json); run `modplural run` again to finish it")
        scorer = None
        if any(task.needs_scorer for task, *_ in self.tasks.values()):
            from modplural.scorers import build_scorer

            scorer = build_scorer(scorer_name, nli_model if nli_model is not None else self.config.nli_model)
        metrics, scores = self.compute_metrics(self.protocol, scorer)
        metrics = {"protocol": self.protocol.name, "scorer": {"name": scorer_name, "identity": getattr(scorer, "identity", None), "proxy": getattr(scorer, "proxy", None)} if scorer else None, **metrics}
        self.run_dir.write_json(self.run_dir.metrics_path(suffix).name, metrics)
        self.run_dir.write_json(self.run_dir.scores_path(suffix).name, scores)
        if self.protocol.calibration != "none" and suffix is None:
            raw, raw_scores = self.compute_metrics(self.protocol, raw=True)
            self.run_dir.write_json(self.run_dir.metrics_path("raw").name, {"protocol": self.protocol.name, "reading": "raw (uncalibrated) distributions", **raw})
            self.run_dir.write_json(self.run_dir.scores_path("raw").name, raw_scores)
        return metrics

    def compute_metrics(self, protocol: Protocol, scorer=None, raw: bool = False) -> tuple[dict, dict]:
        """(metrics, per-item scores) of the stored predictions under ``protocol``'s scoring definitions; kept
        one-option items count only where ``protocol`` keeps them. ``raw``: the option tasks only, scored on each
        prediction's raw (uncalibrated) distribution where it has one."""
        out: dict = {"tasks": {}, "paired": {}}
        scores: dict = {}
        for task_name, (task, _, items, _) in self.tasks.items():
            if raw and task.needs_scorer:
                continue
            if protocol.single_option_items == "drop":
                items = [i for i in items if i.fixed is None]
            per_method: dict[str, dict[str, dict]] = {}
            for method_name in self.config.methods:
                results = {r["id"]: _raw(r["result"]) if raw else r["result"] for r in self.run_dir.read_predictions(task_name, method_name)}
                missing = [i.id for i in items if i.id not in results]
                if missing:
                    raise ModPluralError(f"{self.run_dir.predictions_path(task_name, method_name)}: {len(missing)} of {len(items)} items have no prediction (first: {missing[0]}); the run is unfinished")
                where = self.run_dir.predictions_path(task_name, method_name)
                records = [task.item_metrics(i, _checked(results[i.id], i, where), protocol, scorer) for i in items]
                out["tasks"].setdefault(task_name, {})[method_name] = task.aggregate(items, records, protocol)
                per_method[method_name] = {i.id: r for i, r in zip(items, records)}
            out["paired"][task_name] = self._paired(task, per_method)
            scores[task_name] = per_method
        return out, scores

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
