"""A finished run's metrics, read from its files alone: a run directory, or a committed result kept as
``NAME.manifest.json`` beside ``NAME.metrics.json`` (and ``NAME.scores.json`` where it was kept), as in
``experiments/results/``. Nothing here imports a model library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modplural.errors import ModPluralError
from modplural.json_files import read_json
from modplural.metrics import OVERTON_THRESHOLD, bootstrap
from modplural.papers.definitions import SHARE_KEY
from modplural.runs.directory import RunDir

MANIFEST_SUFFIX = ".manifest.json"


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
    """The run at ``path``: a run directory, or a ``NAME.manifest.json`` file beside ``NAME.metrics.json``."""
    if path.is_dir():
        run = RunDir(path)
        committed = sorted(f.name for f in path.glob(f"*{MANIFEST_SUFFIX}"))
        if committed and not run.manifest_path.is_file():
            raise ModPluralError(f"{path} is not a run directory but holds committed results: pass one of {', '.join(str(path / n) for n in committed)}")
        manifest, metrics = run.manifest(), run.read_json("metrics.json")
        scores = run.read_json("scores.json") if run.scores_path().is_file() else None
    elif path.name.endswith(MANIFEST_SUFFIX) and path.is_file():
        stem = path.name[: -len(MANIFEST_SUFFIX)]
        manifest = read_json(path)
        metrics = read_json(path.with_name(f"{stem}.metrics.json"), dict, f"{path.with_name(stem + '.metrics.json')} is missing: the run has not been scored")
        scores_file = path.with_name(f"{stem}.scores.json")
        scores = read_json(scores_file) if scores_file.is_file() else None
    else:
        raise ModPluralError(f"{path}: not a run directory, nor a NAME{MANIFEST_SUFFIX} file beside NAME.metrics.json")
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
