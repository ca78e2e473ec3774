"""A ``modplural run`` tracked in MLflow: ``track: mlflow`` in a config, or ``modplural run --track mlflow``.

One MLflow run per run directory. Its id is kept in ``RUN/tracking.json``, so a resumed modplural run continues the
same MLflow run. What is logged, and nothing else (no environment, no servers file, no command line):

* params: the config (``config.<field>``, less the fields a resumed run may change, which are tags), the resolved
  protocol (``protocol`` and ``protocol.<switch>``), the main LLM's and each community's identity (``main_llm``,
  ``community.<name>``);
* tags: the config fields a resumed run may change (``chunk_size``, ``batch_size``, ``packed_weights``, ``track``),
  the run directory, git commit and library versions;
* metrics: ``<task>/<method>/<metric>`` with its 95% interval (``.../ci95_low``, ``.../ci95_high``), and the paired
  differences ``<task>/paired/<comparison>/<metric>`` with their p-values;
* artifacts: ``report.md`` and ``plots/`` (written as ``modplural report`` writes them), ``metrics.json``,
  ``scores.json`` and ``manifest.json``.

The store: ``track: {kind: mlflow, uri: URI}``, else ``MLFLOW_TRACKING_URI``, else the store tracking.json records (a
resumed run), else MLflow's own default (MLflow 3: ``sqlite:///mlflow.db`` in the working directory, artifacts under
``./mlruns``: what ``mlflow ui`` opens there). The experiment: ``track: {experiment: NAME}``, else
``MLFLOW_EXPERIMENT_NAME``, else ``modplural``. A URI holding a password is refused (MLflow reads credentials from
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``), so none is written into a run directory or a store.

mlflow is imported only here, and only when a run is tracked (``pip install modplural[mlflow]``). Every failure of
the store is one ``ModPluralError`` line: before generation (an unreachable store is found before any model loads),
or after scoring, when predictions and metrics are already on disk and running the command again logs them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

from modplural.config_files import from_mapping
from modplural.errors import ModPluralError
from modplural.runs.directory import RunDir

KINDS = ("mlflow",)
DEFAULT_EXPERIMENT = "modplural"
ARTIFACTS = ("report.md", "metrics.json", "scores.json", "manifest.json")
_BATCH = 100  # MLflow takes at most 100 params or tags, and 1000 entities, per log_batch
_UNSAFE_KEY = re.compile(r"[^\w\-./ :]")


@dataclass(frozen=True)
class Tracking:
    """Where a run is tracked: ``kind`` (mlflow), the tracking ``uri`` and the ``experiment`` (None: the defaults)."""

    kind: str = "mlflow"
    uri: str | None = None
    experiment: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModPluralError(f"unknown tracking kind {self.kind!r}: choose {' or '.join(KINDS)}")
        if self.uri is not None:
            check_uri(self.uri, "the tracking uri")
        if self.experiment is not None and not self.experiment.strip():
            raise ModPluralError("the tracking experiment is empty: name an MLflow experiment, or leave it out for the default")


def parse_tracking(value: str | dict | None) -> Tracking | None:
    """A config's ``track`` value: None (not tracked), ``mlflow``, or ``{kind: mlflow, uri: ..., experiment: ...}``."""
    if value is None:
        return None
    if isinstance(value, str):
        return Tracking(kind=value)
    if isinstance(value, dict):
        return from_mapping(Tracking, value, "track")
    raise ModPluralError(f"track must be mlflow or a mapping {{kind: mlflow, uri: URI, experiment: NAME}}, got {value!r}")


def check_uri(uri: str, where: str) -> str:
    """``uri`` if it is a non-empty tracking URI without a password in it, else a one-line error."""
    if not uri.strip():
        raise ModPluralError(f"{where} is empty: give a tracking URI, or leave it out for MLFLOW_TRACKING_URI or MLflow's default")
    try:
        password = urlsplit(uri).password
    except ValueError as exc:
        raise ModPluralError(f"{where}: not a URI ({exc})") from exc
    if password is not None:
        raise ModPluralError(f"{where} holds a password: modplural never records one; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead")
    return uri


def open_tracker(value: str | dict | None, run_dir: RunDir, tag_fields: tuple[str, ...]) -> "MlflowTracker | None":
    """The tracker a config's ``track`` asks for, its store reached and its experiment found or made; None when off.
    ``tag_fields``: the config fields a resumed run may change (logged as tags, since MLflow params never change)."""
    spec = parse_tracking(value)
    return None if spec is None else MlflowTracker(spec, run_dir, tag_fields)


def _import_mlflow() -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ModPluralError(f"tracking in MLflow needs mlflow ({exc}): pip install modplural[mlflow]") from exc
    return MlflowClient


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class MlflowTracker:
    """One run directory's MLflow run: the recorded one checked when opened (else made by ``start``), filled by ``finish``,
    marked failed by ``watch``."""

    def __init__(self, spec: Tracking, run_dir: RunDir, tag_fields: tuple[str, ...]) -> None:
        self.run_dir, self.tag_fields = run_dir, tag_fields
        self.recorded = run_dir.read_json(run_dir.tracking_path.name) if run_dir.tracking_path.is_file() else {}
        sources = (("the tracking uri", spec.uri), ("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI")),
                   (str(run_dir.tracking_path), self.recorded.get("tracking_uri")))
        source, self.uri = next(((name, uri) for name, uri in sources if uri), (None, None))
        if self.uri is not None:
            check_uri(self.uri, source)
        client_class = _import_mlflow()
        with self._errors("cannot use"):
            self.client = client_class(tracking_uri=self.uri)
            self.uri = self.client.tracking_uri
        self.experiment = spec.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        self.run_id: str | None = self.recorded.get("run_id")
        with self._errors("cannot reach"):
            if self.run_id is not None:
                self._check_recorded_run()
            else:
                found = self.client.get_experiment_by_name(self.experiment)
                self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(self.experiment)

    def _check_recorded_run(self) -> None:
        """The MLflow run tracking.json names is in this store and not deleted, else a one-line error."""
        where, recorded_uri = self.run_dir.tracking_path, self.recorded.get("tracking_uri")
        if recorded_uri != self.uri:
            raise ModPluralError(f"{where}: this run is tracked as MLflow run {self.run_id} in {recorded_uri}, not {self.uri}; "
                                 "track it there, or remove tracking.json to start a new MLflow run")
        if self.client.get_run(self.run_id).info.lifecycle_stage != "active":
            raise ModPluralError(f"{where}: MLflow run {self.run_id} was deleted from {self.uri}; restore it, or remove tracking.json to start a new MLflow run")

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Any failure of mlflow or its store as one line naming the store."""
        try:
            yield
        except ModPluralError:
            raise
        except Exception as exc:  # mlflow raises its own, HTTP, database and OS errors: all of them are the store's
            where = self.uri or "MLflow's default tracking store"
            raise ModPluralError(f"MLflow: {doing} {where}: {_one_line(exc)}") from exc

    def start(self, manifest: dict) -> str:
        """Continue the MLflow run tracking.json names, or make one (its id written there), and log the config,
        protocol, main LLM and communities. Returns the MLflow run id."""
        with self._errors("cannot log to"):
            if self.run_id is not None:
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = self.client.create_run(self.experiment_id, run_name=self.run_dir.path.name).info.run_id
                self.run_dir.write_json(self.run_dir.tracking_path.name, {"kind": "mlflow", "tracking_uri": self.uri, "experiment": self.experiment,
                                                                           "experiment_id": self.experiment_id, "run_id": self.run_id})
            self._log(params=run_params(manifest, self.tag_fields), tags=run_tags(manifest, self.run_dir, self.tag_fields))
        return self.run_id

    def finish(self, metrics: dict) -> None:
        """Log the metrics, write the report and log it with the run's files, and mark the MLflow run finished."""
        from modplural.runs.report import write_report

        try:
            write_report(self.run_dir.path)
            with self._errors("cannot log to"):
                self._log(metrics=metric_values(metrics))
                for name in ARTIFACTS:
                    if (self.run_dir.path / name).is_file():
                        self.client.log_artifact(self.run_id, str(self.run_dir.path / name))
                if (self.run_dir.path / "plots").is_dir():
                    self.client.log_artifacts(self.run_id, str(self.run_dir.path / "plots"), "plots")
                self.client.set_terminated(self.run_id, "FINISHED")
        except ModPluralError as exc:
            raise ModPluralError(f"{self.run_dir.path}: the run finished and is scored (metrics.json), but tracking it failed: {exc}; "
                                 "run the same command again to log it") from exc

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Mark the started MLflow run KILLED (interrupted) or FAILED when the block raises; the error itself goes on."""
        try:
            yield
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the run's own error matters more than the store's
                self.client.set_terminated(self.run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise

    def _log(self, params: dict[str, str] | None = None, tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        entities = [("params", Param(k, v)) for k, v in (params or {}).items()] + [("tags", RunTag(k, v)) for k, v in (tags or {}).items()]
        entities += [("metrics", Metric(k, v, now, 0)) for k, v in (metrics or {}).items()]
        for start in range(0, len(entities), _BATCH):
            batch: dict[str, list] = {"params": [], "tags": [], "metrics": []}
            for kind, entity in entities[start : start + _BATCH]:
                batch[kind].append(entity)
            self.client.log_batch(self.run_id, **batch)


def _key(text: str) -> str:
    """``text`` as an MLflow key (letters, digits, ``_ - . / : `` and spaces)."""
    return _UNSAFE_KEY.sub("_", text)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def run_params(manifest: dict, tag_fields: tuple[str, ...]) -> dict[str, str]:
    """What the run computes: the config (less ``tag_fields``), the protocol and the model identities, as params."""
    config = {f"config.{k}": _text(v) for k, v in manifest["config"].items() if k not in tag_fields}
    protocol = manifest.get("protocol") or {}
    switches = {f"protocol.{k}": _text(v) for k, v in protocol.items() if k != "name"}
    communities = {_key(f"community.{name}"): _text(identity) for name, identity in (manifest.get("communities") or {}).items()}
    return {**config, "protocol": _text(protocol.get("name")), **switches, "main_llm": _text(manifest.get("main_model")), **communities}


def run_tags(manifest: dict, run_dir: RunDir, tag_fields: tuple[str, ...]) -> dict[str, str]:
    """What may change when a run resumes: ``tag_fields`` of the config, where the run lives, the code and library versions."""
    how = {f"config.{k}": _text(manifest["config"][k]) for k in tag_fields if k in manifest["config"]}
    versions = {_key(f"version.{name}"): _text(v) for name, v in (manifest.get("versions") or {}).items()}
    return {**how, "modplural.runs.directory": str(run_dir.path.resolve()), "modplural.git_commit": _text(manifest.get("git_commit")), **versions}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metric_values(metrics: dict) -> dict[str, float]:
    """A metrics.json as flat MLflow metrics: every estimate with its interval, every paired difference with its p-value."""
    out: dict[str, float] = {}
    for task, per_method in metrics.get("tasks", {}).items():
        for method, values in per_method.items():
            for name, estimate in values.items():
                if not (isinstance(estimate, dict) and _number(estimate.get("value"))):
                    continue  # per-attribute breakdowns stay in metrics.json
                key = _key(f"{task}/{method}/{name}")
                out[key] = float(estimate["value"])
                for bound, value in zip(("ci95_low", "ci95_high"), estimate.get("ci95") or ()):
                    if _number(value):
                        out[f"{key}/{bound}"] = float(value)
    for task, comparisons in metrics.get("paired", {}).items():
        for name, comparison in comparisons.items():
            key = _key(f"{task}/paired/{name}/{comparison.get('metric')}")
            for field, suffix in (("difference", ""), ("p_value", "/p_value")):
                if _number(comparison.get(field)):
                    out[key + suffix] = float(comparison[field])
    return out
