"""VITAL in inspect_ai: a task's items as a dataset, a modplural method as the solver, the papers' metrics as scorer.

``vital_task(name, method, ...)`` builds the ``inspect_ai.Task``; ``modplural/integrations/inspect_tasks.py``
registers the five VITAL tasks with inspect (``inspect eval modplural/vital_overton`` or the file path). Every
``-T`` setting is a field of an experiment config (``main_model``, ``communities``, ``protocol``, ``limit``, ...),
over an optional ``config=`` YAML; the task and method replace the config's ``tasks`` and ``methods``.

There is one generation path: the runner's. The solver's first sample runs ``modplural run`` of that config
(``Experiment.run``: the same assembly, batching, caches, calibration and resumability) into a run directory (``out=``,
default ``runs/inspect_<task>_<method>_<hash of the settings>``), once per eval and one run at a time; every sample
then reads its item's prediction from that directory. So ``-T limit=N`` / ``-T sample=true`` choose the items
(as ``modplural run`` does); inspect's own ``--limit`` only chooses which of them are logged. The scorer reads each
item's metrics from the run's ``scores.json`` (the runner's scoring), and the metric aggregates them with the
task's own ``aggregate``: the numbers are those ``modplural run`` reports for the same items.

Per sample the log holds the answer (the output), the whole prediction (``metadata["modplural"]``: community
messages, selection scores, distributions, weights) and a readable account of it in the transcript.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modplural.config_files import from_mapping, read_yaml
from modplural.errors import ModPluralError
from modplural.protocol import Protocol
from modplural.runs.directory import RunDir
from modplural.runs.config import ExperimentConfig
from modplural.runs.generation import Experiment
from modplural.tasks import Item, get_task
from modplural.types import PluralResult

try:
    import anyio
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.log import transcript
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
    from inspect_ai.solver import Generate, Solver, TaskState, solver
except ImportError as exc:
    raise ModPluralError(f"VITAL in inspect_ai needs inspect-ai ({exc}): pip install modplural[inspect]") from exc

_RUN_LOCK = threading.Lock()  # one modplural run at a time (its models are the heavy part), whatever inspect runs in parallel
_FINISHED: dict[str, "FinishedRun | ModPluralError"] = {}  # run directory -> its predictions, or why it failed


@dataclass(frozen=True)
class FinishedRun:
    """What samples read from a finished run directory: per item id, the prediction and its metrics."""

    predictions: dict[str, dict]
    scores: dict[str, dict]
    main_llm: str


def run_settings(name: str, method: str, config: str | None, data_dir: str | None, out: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """The solver's and scorer's settings (plain data, as inspect logs them): the config, data root and run directory."""
    from modplural.data_paths import data_dir as find_data_dir

    fields = read_yaml(Path(config)) if config else {}
    fields.update({k: [v] if k == "communities" and isinstance(v, str) else v for k, v in settings.items()})  # -T communities=one
    fields.update(tasks=[name], methods=[method])
    digest = hashlib.sha256(json.dumps({k: v for k, v in fields.items() if k != "name"}, sort_keys=True, default=str).encode()).hexdigest()[:8]
    fields["name"] = f"inspect_{name}_{method}_{digest}"
    checked = from_mapping(ExperimentConfig, fields, config or "inspect task arguments")
    return {"config": checked.as_dict(), "data_dir": str(find_data_dir(data_dir)), "out": out or str(Path("runs") / checked.name)}


def _experiment(settings: dict[str, Any]) -> Experiment:
    config = from_mapping(ExperimentConfig, settings["config"], "inspect task settings")
    return Experiment(config, Path(settings["data_dir"]), Path(settings["out"]), command=f"inspect eval {config.tasks[0]} (method {config.methods[0]})")


def finished_run(settings: dict[str, Any]) -> FinishedRun:
    """The run of ``settings``, made by ``Experiment.run`` (resuming whatever its directory holds) the first time it
    is asked for in this process, read from its directory after that; a failure is kept and raised for every sample."""
    with _RUN_LOCK:
        key = str(Path(settings["out"]).resolve())
        if key not in _FINISHED:
            try:
                _experiment(settings).run(progress=False)
                _FINISHED[key] = _read_run(RunDir(settings["out"]), settings["config"]["tasks"][0], settings["config"]["methods"][0])
            except ModPluralError as exc:
                _FINISHED[key] = exc
        found = _FINISHED[key]
    if isinstance(found, ModPluralError):
        raise found
    return found


def _read_run(run: RunDir, task: str, method: str) -> FinishedRun:
    predictions = {r["id"]: r["result"] for r in run.read_predictions(task, method)}
    scores = run.read_json(run.scores_path().name).get(task, {}).get(method, {})
    return FinishedRun(predictions, scores, str(run.manifest().get("main_model")))


def _answer(result: dict) -> str:
    """The answer as text: the response, or the distribution one option a line."""
    if result.get("distribution") is None:
        return result.get("response") or ""
    return "\n".join(f"{option}: {p:.3f}" for option, p in zip(result["options"], result["distribution"]))


def _account(result: dict) -> str:
    """A readable account of a prediction (messages, selection, answer), as ``modplural ask`` prints it."""
    if result.get("fixed"):
        return f"a one-option item: all mass on {result['options'][0]!r}, no method asked"
    return str(PluralResult(**result))


@solver
def modplural_method(settings: dict[str, Any]) -> Solver:
    """The config's method on the sample's item, read from the config's ``modplural run`` (made on first use)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        run = await anyio.to_thread.run_sync(finished_run, settings)
        item_id = str(state.sample_id)
        if item_id not in run.predictions:
            raise ModPluralError(f"{settings['out']}: no prediction for item {item_id}")
        result = run.predictions[item_id]
        state.output = ModelOutput.from_content(model=run.main_llm, content=_answer(result))
        state.messages.append(state.output.message)
        state.metadata["modplural"] = {"run_dir": settings["out"], "main_llm": run.main_llm, **result}
        transcript().info(_account(result), source="modplural")
        return state

    return solve


@scorer(metrics=[])
def item_metrics(settings: dict[str, Any]) -> Scorer:
    """The item's metrics as the runner scored them (the run's ``scores.json``), with its group for per-group metrics."""

    async def score(state: TaskState, target: Target) -> Score:
        run = await anyio.to_thread.run_sync(finished_run, settings)
        item_id = str(state.sample_id)
        if item_id not in run.scores:
            raise ModPluralError(f"{settings['out']}: no scores for item {item_id}")
        return Score(value=run.scores[item_id], answer=state.output.completion, metadata={"group": state.metadata.get("group")})

    return score


@metric
def papers_metrics(task: str, protocol: dict[str, Any]) -> Metric:
    """The task's aggregate metrics (as ``metrics.json`` has them, point estimates) over the scored samples."""
    task_object = get_task(task)[0]
    checked = from_mapping(Protocol, protocol, "protocol")

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        if not scores:
            return {}
        items = [Item(str(s.sample_id), None, {}, (s.score.metadata or {}).get("group")) for s in scores]
        aggregated = task_object.aggregate(items, [dict(s.score.value) for s in scores], checked)
        return {name: estimate["value"] for name, estimate in aggregated.items() if isinstance(estimate, dict) and "value" in estimate}

    return compute


def _sample(item: Item) -> Sample:
    query = item.query
    metadata = {"group": item.group, "gold": item.gold}
    if query is None:  # a kept one-option item: answered without asking any method
        return Sample(id=item.id, input=f"one-option item {item.id}", target=json.dumps(item.gold), metadata=metadata)
    metadata.update(options=list(query.options) if query.options else None, attribute=query.attribute, persona=query.persona, situation=query.situation)
    target = item.gold.get("label") or json.dumps(item.gold, ensure_ascii=False)
    return Sample(id=item.id, input=query.text, target=target, metadata=metadata)


def vital_task(name: str, method: str = "modular", config: str | None = None, data_dir: str | None = None, out: str | None = None, **settings: Any) -> Task:
    """The inspect_ai task of modplural task ``name`` answered by ``method``; ``settings``: experiment config fields."""
    resolved = run_settings(name, method, config, data_dir, out, settings)
    experiment = _experiment(resolved)  # validates the config and every item before any model loads
    _, _, items, _ = experiment.tasks[name]
    return Task(dataset=MemoryDataset([_sample(i) for i in items], name=name), solver=modplural_method(resolved), scorer=item_metrics(resolved),
                metrics=[papers_metrics(name, experiment.protocol.as_dict())], metadata={"modplural": resolved})
