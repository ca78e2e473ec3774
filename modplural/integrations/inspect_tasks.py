"""VITAL's five tasks registered with inspect_ai (``pip install modplural[inspect]``).

By file, or by the ``inspect_ai`` entry point this package declares::

    inspect eval modplural/integrations/inspect_tasks.py@vital_overton -T method=modular -T limit=2
    inspect eval modplural/vital_steerable_vk -T method=vanilla -T main_model=default -T limit=40 -T sample=true

``-T`` takes ``method``, ``config`` (an experiment YAML), ``data_dir``, ``out`` (the run directory) and any
experiment config field; see ``modplural/integrations/inspect_vital.py``.
"""

from __future__ import annotations

from typing import Any

from inspect_ai import Task, task

from modplural.integrations.inspect_vital import vital_task


@task
def vital_overton(method: str = "modular", **settings: Any) -> Task:
    """VITAL Overton (ValueKaleidoscope situations): coverage of the values, by the configured scorer."""
    return vital_task("vital_overton", method, **settings)


@task
def vital_steerable_vk(method: str = "modular", **settings: Any) -> Task:
    """VITAL steerable ValueKaleidoscope: does the value support or oppose the situation."""
    return vital_task("vital_steerable_vk", method, **settings)


@task
def vital_steerable_opinionqa(method: str = "modular", **settings: Any) -> Task:
    """VITAL steerable OpinionQA: answer as a demographic group answers."""
    return vital_task("vital_steerable_opinionqa", method, **settings)


@task
def vital_distributional_moralchoice(method: str = "modular", **settings: Any) -> Task:
    """VITAL distributional MoralChoice: the population's distribution over the choices."""
    return vital_task("vital_distributional_moralchoice", method, **settings)


@task
def vital_distributional_globalopinionqa(method: str = "modular", **settings: Any) -> Task:
    """VITAL distributional GlobalOpinionQA: a country's distribution over the answers."""
    return vital_task("vital_distributional_globalopinionqa", method, **settings)
