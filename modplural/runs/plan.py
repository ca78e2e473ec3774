"""A run's plan: its directory, config, protocol, tasks with their items, and the command that made it. Generation
fills a plan's directory; scoring, reporting and viewing read a finished one (``read_plan``) without the generation
stack."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from modplural.config_files import from_mapping
from modplural.errors import ModPluralError
from modplural.protocol import Protocol
from modplural.provenance import file_sha256
from modplural.runs.config import ExperimentConfig, recorded_protocol
from modplural.runs.directory import RunDir
from modplural.runs.selection import TaskItems, task_items
from modplural.tasks import Item


@dataclass(frozen=True)
class RunPlan:
    """What one run directory holds (or will hold) for one config, every item validated."""

    directory: RunDir
    config: ExperimentConfig
    protocol: Protocol
    tasks: dict[str, TaskItems]
    calibration: dict[str, list[Item]]  # task -> its calibration items (calibration split, weights learned)
    command: str
    data_dir: Path


def plan_run(config: ExperimentConfig, data_dir: Path, out: Path, command: str | None = None, protocol: Protocol | None = None) -> RunPlan:
    """The plan of running ``config`` into ``out``; every task file is read and validated here, before any model loads."""
    protocol = protocol or config.resolved_protocol()
    tasks, calibration = task_items(config, data_dir, protocol)
    return RunPlan(RunDir(out), config, protocol, tasks, calibration, command or " ".join(sys.argv), data_dir)


def read_plan(run_dir: Path, data_dir: Path) -> RunPlan:
    """The plan a run directory's manifest recorded, under the protocol it recorded (a switch added since then has its
    original value, which is what such a run did), its data files checked against the manifest's hashes."""
    directory = RunDir(run_dir)
    manifest = directory.manifest()
    where = str(directory.manifest_path)
    if not isinstance(manifest.get("config"), dict):
        raise ModPluralError(f"{where}: no config in the manifest")
    config = from_mapping(ExperimentConfig, manifest["config"], where)
    data = manifest.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ModPluralError(f"{where}: 'data' must be an object of per-task file records")
    plan = plan_run(config, data_dir, run_dir, manifest.get("command"), recorded_protocol(manifest, where))
    for name, entry in plan.tasks.items():
        recorded = data.get(name, {}).get("sha256")
        if recorded != file_sha256(entry.path):
            raise ModPluralError(f"{entry.path} differs from the file this run used (sha256 {str(recorded)[:12]}...); pass the --data-dir the run used")
    return plan
