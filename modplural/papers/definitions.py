"""The metric definitions a published number may be given in, each mapped to the modplural metric that computes it.

A published number names its definition; ``convert`` turns its value into the unit modplural reports (a fraction).
A definition missing here, or one listed in ``REFUSED`` (no modplural metric computes it from what a run keeps), is
a one-line error, never a silently mismatched cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from modplural.errors import ModPluralError
from modplural.metrics import OVERTON_THRESHOLD

OVERTON = "overton_valuekaleidoscope"  # Task.name of each task kind (modplural/tasks/)
VK = "steerable_valuekaleidoscope"
OPINIONQA = "steerable_opinionqa"
DISTRIBUTIONAL = ("distributional_moralchoice", "distributional_globalopinionqa")
SHARE_KEY = f"share_above_{OVERTON_THRESHOLD}"  # modplural's key for the share of situations above the threshold
UNITS = {"fraction": 1.0, "percent": 100.0}


@dataclass(frozen=True)
class Definition:
    """A published metric: the modplural metric key that computes it, its row label, and the task kinds it is for."""

    ours: str
    label: str
    tasks: tuple[str, ...]


DEFINITIONS: dict[str, Definition] = {
    "overton_mean_coverage": Definition("coverage", "coverage: mean", (OVERTON,)),
    "overton_share_above_0.33": Definition(SHARE_KEY, f"coverage: share > {OVERTON_THRESHOLD}", (OVERTON,)),
    "accuracy": Definition("accuracy", "accuracy", (VK,)),
    "balanced_accuracy": Definition("balanced_accuracy", "balanced accuracy", (VK,)),
    "macro_f1": Definition("macro_f1", "macro-F1", (VK,)),
    "binary_accuracy": Definition("binary_accuracy", "binary accuracy", (VK,)),
    "binary_balanced_accuracy": Definition("binary_balanced_accuracy", "binary balanced accuracy", (VK,)),
    "binary_macro_f1": Definition("binary_macro_f1", "binary macro-F1", (VK,)),
    "most_likely_correctness": Definition("accuracy", "most-likely correctness", (OPINIONQA,)),
    "js_distance": Definition("js_distance", "JS distance", (OPINIONQA, *DISTRIBUTIONAL)),
}

REFUSED = {
    "js_divergence": "a mean of Jensen-Shannon divergences is not a function of modplural's mean JS distance (the square root of each item's divergence)",
    "overton_std": "the scripts' standard deviation of situation coverage is not in modplural's metrics",
}


def definition(name: str, task_kind: str, where: str) -> Definition:
    """The definition ``name`` for a task of kind ``task_kind``, or a one-line error saying why it cannot be converted."""
    if name in REFUSED:
        raise ModPluralError(f"{where}: metric {name!r} cannot be converted to a modplural metric: {REFUSED[name]}")
    if name not in DEFINITIONS:
        raise ModPluralError(f"{where}: metric {name!r} cannot be converted to a modplural metric (convertible: {', '.join(DEFINITIONS)})")
    found = DEFINITIONS[name]
    if task_kind not in found.tasks:
        raise ModPluralError(f"{where}: metric {name!r} is not a metric of a {task_kind} task (it is for {', '.join(found.tasks)})")
    return found


def convert(value: float, unit: str, where: str) -> float:
    """A published value in modplural's unit (a fraction; JS distances as they are)."""
    if unit not in UNITS:
        raise ModPluralError(f"{where}: unit must be {' or '.join(UNITS)}, got {unit!r}")
    return value / UNITS[unit]


def rows_for(task_kind: str) -> list[str]:
    """The definitions a compare table shows for a task of this kind, in table order (Overton: both of its definitions)."""
    return [name for name, d in DEFINITIONS.items() if task_kind in d.tasks]
