"""Which items a run evaluates, and which it fits priors or weights on: per task, the items of its file (validated
before any model loads), the ``limit`` picked from them, and the calibration items disjoint from those."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from modplural.errors import ModPluralError
from modplural.protocol import Protocol
from modplural.runs.config import ExperimentConfig
from modplural.seeds import seeded_key
from modplural.tasks import Item, Task, load_task


class TaskItems(NamedTuple):
    """One task of a run: the task, its file, the items evaluated and the ids left out under the protocol."""

    task: Task
    path: Path
    items: list[Item]
    left_out: list[str]


def task_items(config: ExperimentConfig, data_dir: Path, protocol: Protocol) -> tuple[dict[str, TaskItems], dict[str, list[Item]]]:
    """Every task of ``config`` with its items, and the calibration items of the tasks the protocol fits something
    on; a task with nothing to run is a one-line error naming its file."""
    tasks, calibration = {}, {}
    for name in config.tasks:
        task, path, items, skipped = load_task(name, data_dir, protocol)
        if not items:
            why = f"all {len(skipped)} of its items are skipped under this protocol" if skipped else "it holds no items"
            raise ModPluralError(f"{path}: nothing to run for {name}: {why}")
        tasks[name] = TaskItems(task, path, select_items(items, config), skipped)
        if needs_calibration_items(protocol, task):
            calibration[name] = select_calibration_items(items, tasks[name].items, config)
    return tasks, calibration


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
