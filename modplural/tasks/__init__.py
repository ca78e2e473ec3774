"""Tasks by name: VITAL's five tasks and Modular Pluralism's general-domain versions of them."""

from __future__ import annotations

from pathlib import Path

from modplural.errors import ModPluralError
from modplural.protocol import Protocol
from modplural.tasks.base import Item, Task
from modplural.tasks.distributional import DistributionalTask
from modplural.tasks.overton import OvertonTask
from modplural.tasks.steerable import SteerableOpinionQA, SteerableValueKaleidoscope

# name -> (task, file relative to the data directory)
TASKS: dict[str, tuple[Task, str]] = {
    "vital_overton": (OvertonTask(), "vital/vital_overton_valuekaleidoscope.json"),
    "vital_steerable_vk": (SteerableValueKaleidoscope(), "vital/vital_steerable_valuekaleidoscope.json"),
    "vital_steerable_opinionqa": (SteerableOpinionQA(), "vital/vital_steerable_opinionqa.json"),
    "vital_distributional_moralchoice": (DistributionalTask("distributional_moralchoice", country_persona=False), "vital/vital_distributional_moralchoice.json"),
    "vital_distributional_globalopinionqa": (DistributionalTask("distributional_globalopinionqa", country_persona=True), "vital/vital_distributional_globalopinionqa.json"),
    "general_overton": (OvertonTask(), "modplural_general/overton_test_valuekaleidoscope_small.json"),
    "general_steerable_vk": (SteerableValueKaleidoscope(), "modplural_general/steerable_test_valuekaleidoscope_small.json"),
    "general_steerable_opinionqa": (SteerableOpinionQA(), "modplural_general/steerable_test_opinionqa_small.json"),
    "general_distributional_moralchoice": (DistributionalTask("distributional_moralchoice", country_persona=False), "modplural_general/distributional_test_moralchoice.json"),
    "general_distributional_globalopinionqa": (DistributionalTask("distributional_globalopinionqa", country_persona=True), "modplural_general/distributional_test_globalopinionqa_small.json"),
}


def get_task(name: str) -> tuple[Task, str]:
    if name not in TASKS:
        raise ModPluralError(f"unknown task {name!r}: choose from {', '.join(TASKS)}")
    return TASKS[name]


def load_task(name: str, data_dir: Path, protocol: Protocol) -> tuple[Task, Path, list[Item], list[str]]:
    """The task, its file, its validated items under ``protocol``, and notes on items left out."""
    task, relative = get_task(name)
    path = data_dir / relative
    items, skipped = task.load(path, protocol)
    return task, path, items, skipped


__all__ = ["TASKS", "Item", "Task", "get_task", "load_task"]
