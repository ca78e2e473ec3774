"""A finished run's metrics, read from its files alone: a run directory, or a committed one under
``experiments/results/<study>/runs/`` (its manifest and metrics, and its per-item scores where they were kept).
Nothing here imports a model library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modplural.errors import ModPluralError
from modplural.metrics import OVERTON_THRESHOLD, bootstrap
from modplural.papers.definitions import SHARE_KEY
from modplural.runs.directory import RunDir


@dataclass(frozen=True)
class Estimate:
    """A metric of the run: value, 95% interval, items, and which file it came from."""

    value: float
    ci95: tuple[float, float]
    n: int
    origin: str  # "metrics" or "scores" (recomputed from per-item scores)


@dataclass(frozen=True)
class RunMetrics:
    """The manifest, metrics and (where kept) per-item scores of one finished run."""

    where: Path
    manifest: dict
    metrics: dict
    scores: dict | None

    @property
    def tasks(self) -> list[str]:
        return list(self.metrics["tasks"])

    def estimate(self, task: str, method: str, key: str) -> Estimate | None:
        """``key`` of ``task`` / ``method`` from metrics.json; the share above the Overton threshold is recomputed
        from per-item coverage where metrics.json predates it; None where the run's files cannot give it."""
        stored = self.metrics["tasks"].get(task, {}).get(method, {}).get(key)
        try:
            if isinstance(stored, dict) and "value" in stored:
                low, high = stored["ci95"]
                return Estimate(float(stored["value"]), (float(low), float(high)), int(stored["n"]), "metrics")
            items = ((self.scores or {}).get(task) or {}).get(method)
            if key == SHARE_KEY and isinstance(items, dict) and items and all(isinstance(r, dict) and "coverage" in r for r in items.values()):
                share = bootstrap([float(float(r["coverage"]) > OVERTON_THRESHOLD) for r in items.values()])
                return Estimate(share.value, (share.low, share.high), share.n, "scores")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModPluralError(f"{self.where}: {task} / {method} / {key} is not what modplural writes ({type(exc).__name__}: {exc})") from exc
        return None


def read_run(path: Path) -> RunMetrics:
    """The finished run in directory ``path``."""
    if not path.is_dir():
        raise ModPluralError(f"{path}: not a run directory (one holding manifest.json and metrics.json)")
    run = RunDir(path)
    if not run.manifest_path.is_file():
        inside = sorted(p.parent.name for p in path.glob("*/manifest.json")) or sorted(p.parent.name for p in path.glob("runs/*/manifest.json"))
        where = f"; the runs under it: {', '.join(inside)}" if inside else ""
        raise ModPluralError(f"{path}: not a run directory (no manifest.json){where}")
    if not (path / "metrics.json").is_file():
        raise ModPluralError(f"{path}: no metrics.json, the run has not been scored (run `modplural score {path}`)")
    manifest, metrics = run.manifest(), run.read_json("metrics.json")
    scores = run.read_json("scores.json") if run.scores_path().is_file() else None
    _check(path, manifest, metrics)
    return RunMetrics(path, manifest, metrics, scores)


def _check(where: Path, manifest: dict, metrics: dict) -> None:
    """Refuse files of another shape than modplural writes, naming the field."""
    if not isinstance(manifest.get("config"), dict):
        raise ModPluralError(f"{where}: the manifest has no 'config' object; not a modplural run")
    if "finished" not in manifest:
        raise ModPluralError(f"{where}: the run is unfinished (no 'finished' in its manifest); run `modplural run` again to finish it")
    tasks = metrics.get("tasks")
    if not isinstance(tasks, dict) or not tasks or not all(isinstance(m, dict) and all(isinstance(v, dict) for v in m.values()) for m in tasks.values()):
        raise ModPluralError(f"{where}: the metrics have no 'tasks' object of methods; run `modplural score` on the run again")
