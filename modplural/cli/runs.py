"""Experiments: ``modplural run``, ``score``, ``report``, ``view`` and ``data download``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from modplural.cli import options
from modplural.errors import ModPluralError


def register(sub: argparse._SubParsersAction) -> None:
    runner = sub.add_parser("run", help="run an experiment config (resumable)")
    runner.add_argument("config", help="experiment YAML (see experiments/configs/)")
    options.add_data_dir(runner)
    runner.add_argument("--limit", type=int, default=None, help="items per task (overrides the config)")
    runner.add_argument("--tasks", type=_names, default=None, help="comma-separated tasks of the config to run (overrides its tasks), "
                        "e.g. to split a long study into runs that each finish in one sitting")
    runner.add_argument("--methods", type=_names, default=None, help="comma-separated methods to run (overrides the config's)")
    runner.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    options.add_engine(runner, default=None)
    options.add_protocol(runner, None, "overrides the config's protocol")
    options.add_switches(runner)
    runner.add_argument("--track", choices=("mlflow",), default=None,
                        help="track the run in MLflow (the config's track settings, else MLFLOW_TRACKING_URI or MLflow's default store)")
    runner.add_argument("--no-progress", action="store_true")
    runner.set_defaults(func=run)

    scorer = sub.add_parser("score", help="recompute metrics of a finished run from its stored predictions (no generator loaded)")
    scorer.add_argument("run_dir")
    options.add_scorer(scorer, "Overton scorer (default: the run's); another one writes metrics.<scorer>.json")
    scorer.add_argument("--nli-model", default=None, help="with --scorer nli: an MNLI model id or path")
    options.add_data_dir(scorer, "data root the run used (default: MODPLURAL_DATA or ../shared/data)")
    scorer.set_defaults(func=score)

    report = sub.add_parser("report", help="write report.md and plots for a run directory")
    report.add_argument("run_dir")
    report.set_defaults(func=write_report)

    viewer = sub.add_parser("view", help="write one self-contained HTML page to browse a scored run (answers side by side, messages, per-item metrics)")
    viewer.add_argument("run_dir")
    viewer.add_argument("--out", default=None, help="HTML file (default: RUN_DIR/view.html)")
    options.add_data_dir(viewer, "data root the run used (default: MODPLURAL_DATA or ../shared/data)")
    viewer.set_defaults(func=view)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    download = data.add_parser("download", help="download a public dataset (needs internet)")
    download.add_argument("dataset", help="vital")
    download.add_argument("--data-dir", default="data", help="where to put it (files go to DATA_DIR/vital/)")
    download.add_argument("--base-url", default=None)
    download.add_argument("--timeout", type=_download_timeout, default=30, help="seconds each file's whole download may take (at most 3600)")
    download.set_defaults(func=data_download)


def run(args: argparse.Namespace) -> int:
    from modplural.data_paths import data_dir
    from modplural.runs.config import load_config
    from modplural.runs.generation import Experiment

    overrides = {"limit": args.limit, "engine": args.engine, "tasks": args.tasks, "methods": args.methods}
    config = load_config(Path(args.config), protocol=args.protocol, **overrides)
    if args.switch:
        config = load_config(Path(args.config), protocol=options.protocol_spec(config.protocol, args.switch), **overrides)
    if args.track and config.track is None:  # a config's own track settings (uri, experiment) are kept
        config = dataclasses.replace(config, track=args.track)
    parts = [args.protocol, *args.switch, *(args.tasks or ()), *(args.methods or ())]
    suffix = "".join(f"_{part}" for part in parts if part).replace("=", "-")
    out = Path(args.out) if args.out else Path("runs") / (config.name + suffix)
    metrics = Experiment(config, data_dir(args.data_dir), out).run(progress=not args.no_progress)
    print_metrics(metrics)
    print(f"predictions, manifest and metrics in {out}; `modplural report {out}` writes the report")
    return 0


def _names(value: str) -> list[str]:
    """A comma-separated list of names (tasks, methods); checked against the known ones with the config."""
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {value!r}")
    return names


def score(args: argparse.Namespace) -> int:
    from modplural.data_paths import data_dir
    from modplural.runs.plan import read_plan
    from modplural.runs.scoring import score as score_run

    plan = read_plan(Path(args.run_dir), data_dir(args.data_dir))
    metrics = score_run(plan, args.scorer, args.nli_model)
    print_metrics(metrics)
    suffix = "" if args.scorer in (None, plan.config.scorer) else f".{args.scorer}"
    print(f"wrote {Path(args.run_dir) / f'metrics{suffix}.json'} (protocol {metrics['protocol']})")
    if plan.protocol.calibration != "none" and not suffix:
        print(f"wrote {plan.directory.metrics_path('raw')} (the option tasks on the raw, uncalibrated distributions)")
    return 0


def print_metrics(metrics: dict) -> None:
    for task, per_method in metrics["tasks"].items():
        for method, values in per_method.items():
            shown = ", ".join(f"{k} {v['value']:.3f}" for k, v in values.items() if isinstance(v, dict) and "ci95" in v)
            print(f"{task:<40} {method:<10} {shown}")


def write_report(args: argparse.Namespace) -> int:
    from modplural.runs.report import write_report as write

    print(f"wrote {write(Path(args.run_dir))}")
    return 0


def view(args: argparse.Namespace) -> int:
    from modplural.data_paths import data_dir
    from modplural.runs.view import write_view

    print(write_view(Path(args.run_dir), data_dir(args.data_dir), Path(args.out) if args.out else None))
    return 0


def _download_timeout(text: str) -> float:
    """``--timeout``: a number of seconds in (0, 3600]."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds in (0, 3600], got {text!r}")
    return seconds


def data_download(args: argparse.Namespace) -> int:
    from modplural.data_download import VITAL_BASE_URL, download_vital

    if args.dataset != "vital":
        raise ModPluralError(f"unknown dataset {args.dataset!r}: only 'vital' can be downloaded")
    for line in download_vital(Path(args.data_dir), args.base_url or VITAL_BASE_URL, args.timeout):
        print(line)
    return 0
