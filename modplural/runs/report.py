"""A run directory -> report.md and PNG plots a researcher can put in a paper."""

from __future__ import annotations

import io
from pathlib import Path

from modplural.atomic_files import own_directory, write_atomic
from modplural.errors import ModPluralError
from modplural.protocol import ORIGINAL, SWITCHES
from modplural.runs.directory import RunDir
from modplural.tasks import TASKS, get_task


def _fmt(estimate: dict) -> str:
    low, high = estimate["ci95"]
    return f"{estimate['value']:.3f} [{low:.3f}, {high:.3f}]"


def _headline(task_name: str) -> tuple[str, bool]:
    """The metric a task's plot shows, and whether higher is better, as the task declares them."""
    task, _ = get_task(task_name)
    return task.headline, task.primary[1]


def _comparability(protocol: dict, scorer: dict | None) -> str:
    """Whether the numbers can be set beside the papers' (every switch as in the original, NLI scorer for Overton)."""
    # a switch missing from an older manifest did not exist yet: that run had the original's behaviour
    flipped = [name for name in SWITCHES if protocol.get(name, getattr(ORIGINAL, name)) != getattr(ORIGINAL, name)]
    if flipped:
        return f"switches differ from the original scripts ({', '.join(flipped)}): compare methods within this report, not with published numbers"
    lengths = [f"{name} {protocol.get(name)}" for name in ("message_tokens", "main_tokens") if protocol.get(name) != getattr(ORIGINAL, name)]
    note = f"; decoding lengths shortened ({', '.join(lengths)}), which the papers did not do" if lengths else ""
    if scorer and scorer.get("proxy"):
        return f"the papers' protocol{note}; Overton coverage uses a proxy scorer, so only the other tasks follow the papers' measurement"
    return f"the papers' protocol{note}: comparable with published numbers for the same models and data"


def write_report(run_dir: Path) -> Path:
    """Write ``report.md`` and ``plots/*.png`` into ``run_dir``; returns the report path. A manifest, metrics or
    scores file of another shape than modplural writes is a one-line error naming the files and the field."""
    run = RunDir(run_dir)
    manifest, metrics = run.manifest(), run.read_json("metrics.json")
    for name, value, kind in (("manifest.json: config", manifest.get("config"), dict), ("metrics.json: tasks", metrics.get("tasks"), dict),
                              ("metrics.json: paired", metrics.get("paired", {}), dict)):
        if not isinstance(value, kind) or (name.endswith("tasks") and not value):
            raise ModPluralError(f"{run.path / name.split(':')[0]}: '{name.split(': ')[1]}' is missing or not an object; run `modplural score {run.path}` again")
    unknown = [name for name in metrics["tasks"] if name not in TASKS]
    if unknown:
        raise ModPluralError(f"{run.path / 'metrics.json'}: unknown task {unknown[0]!r} in 'tasks' (modplural knows {', '.join(TASKS)}); "
                             f"run `modplural score {run.path}` again")
    try:
        return _write_report(run, manifest, metrics)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, StopIteration) as exc:
        raise ModPluralError(f"{run.path}: manifest.json, metrics.json or scores.json is not what modplural writes ({type(exc).__name__}: {exc}); "
                             f"run `modplural score {run.path}` again") from exc


def _write_report(run: RunDir, manifest: dict, metrics: dict) -> Path:
    run_dir = run.path
    config = manifest["config"]
    protocol = manifest.get("protocol", {})
    methods = config["methods"]
    lines = [f"# {config['name']}", "", "## What was run", "",
             f"- Command: `{manifest['command']}`",
             f"- Main LLM: `{manifest['main_model']}`",
             f"- Communities ({len(manifest['communities'])}): " + (", ".join(f"`{n}`" for n in manifest["communities"]) or "none"),
             f"- Methods: {', '.join(methods)}",
             f"- Protocol: `{protocol.get('name')}` ({_comparability(protocol, metrics.get('scorer'))})",
             f"- Community messages: {protocol.get('message_tokens')} new tokens, temperature {config['message_temperature']}, top-p {config['message_top_p']}, top-k 50, seed {config['seed']}; "
             f"main LLM: temperature {protocol.get('main_temperature')}, {protocol.get('main_tokens')} new tokens (free-text steerable answers {protocol.get('steer_tokens')})",
             f"- Git commit: `{manifest.get('git_commit')}`; started {manifest['started']}, finished {manifest.get('finished', 'not finished')}",
             f"- Machine: {manifest['machine']['processor']}, {manifest['machine']['cpu_count']} CPUs{_vectors(manifest['machine'])}; torch {manifest['versions']['torch']}, transformers {manifest['versions']['transformers']}",
             ]
    scorer = metrics.get("scorer")
    if scorer:
        label = " — a **proxy** (embedding cosine similarity), not the papers' NLI entailment; its scale differs, so compare methods, not absolute numbers with the papers" if scorer["proxy"] else ""
        lines.append(f"- Overton scorer: `{scorer['identity']}`{label}")
    lines += ["", "## Data", "", "| task | file | items run | left out | sha256 |", "|---|---|---|---|---|"]
    for task, info in manifest["data"].items():
        lines.append(f"| {task} | `{Path(info['file']).name}` | {info['items_run']} | {len(info['left_out'])} | `{info['sha256'][:12]}` |")
    left_out = [(t, note) for t, info in manifest["data"].items() for note in info["left_out"]]
    if left_out:
        lines += ["", f"Items left out ({len(left_out)}; single-option or duplicate-option questions): " + "; ".join(f"{t}: {n}" for t, n in left_out[:5]) + (" ..." if len(left_out) > 5 else "")]
    lines += ["", "## Results", "", "Values with bootstrap 95% confidence intervals over items. JS = Jensen-Shannon distance (lower is better).", ""]
    for task, per_method in metrics["tasks"].items():
        keys = [k for k, v in next(iter(per_method.values())).items() if isinstance(v, dict) and "ci95" in v]
        lines += [f"### {task}", "", "| method | " + " | ".join(keys) + " | n |", "|---|" + "---|" * (len(keys) + 1)]
        for method, values in per_method.items():
            lines.append(f"| {method} | " + " | ".join(_fmt(values[k]) for k in keys) + f" | {values[keys[0]]['n']} |")
        lines.append("")
        for key in [k for k in next(iter(per_method.values())) if k.startswith("per_attribute")]:
            groups = sorted({g for v in per_method.values() for g in v[key]})
            shown = groups[:25]
            lines += [f"{key.replace('_', ' ')} (mean per attribute" + (f"; first 25 of {len(groups)}" if len(groups) > 25 else "") + ")", "",
                      "| attribute | " + " | ".join(per_method) + " | n |", "|---|" + "---|" * (len(per_method) + 1)]
            for group in shown:
                cells = [f"{v[key][group]['value']:.3f}" if group in v[key] else "" for v in per_method.values()]
                n = max(v[key][group]["n"] for v in per_method.values() if group in v[key])
                lines.append(f"| {group} | " + " | ".join(cells) + f" | {n} |")
            lines.append("")
        paired = metrics["paired"].get(task) or {}
        if paired:
            lines += ["Paired bootstrap on the same items:", "", "| comparison | metric | difference [95% CI] | p | n |", "|---|---|---|---|---|"]
            for name, p in paired.items():
                lines.append(f"| {name} | {p['metric']} ({'higher' if p['higher_is_better'] else 'lower'} is better) | {p['difference']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] | {p['p_value']:.3f} | {p['n']} |")
            lines.append("")
        lines += [f"![{task}](plots/{task}.png)", ""]
    plots = own_directory(run_dir / "plots")
    _plot_metrics(metrics, plots)
    _plot_js(run_dir, metrics, plots)
    for task in metrics["tasks"]:
        if (plots / f"{task}_js.png").is_file():
            lines += [f"![{task} JS distances](plots/{task}_js.png)", ""]
    return write_atomic(run_dir / "report.md", "\n".join(lines) + "\n")


def _save(fig, path: Path) -> None:
    """A figure as PNG, written atomically (never through a link planted at ``path``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    write_atomic(path, buffer.getvalue())


def _plot_metrics(metrics: dict, plots: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for task, per_method in metrics["tasks"].items():
        key, higher_is_better = _headline(task)
        names = list(per_method)
        values = [per_method[m][key]["value"] for m in names]
        errors = [[v - per_method[m][key]["ci95"][0] for m, v in zip(names, values)], [per_method[m][key]["ci95"][1] - v for m, v in zip(names, values)]]
        fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.2))
        try:
            ax.bar(names, values, yerr=errors, capsize=4, color="#4c72b0")
            ax.set_ylabel(f"{key} ({'higher' if higher_is_better else 'lower'} is better)")
            ax.set_title(task)
            fig.tight_layout()
            _save(fig, plots / f"{task}.png")
        finally:  # a damaged metrics file must not leave figures open in a long-lived process
            plt.close(fig)


def _plot_js(run_dir: Path, metrics: dict, plots: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for task, per_method in metrics["tasks"].items():
        if "js_distance" not in next(iter(per_method.values())):
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        try:
            scores = RunDir(run_dir).read_json("scores.json")
            for method in per_method:
                values = [r["js_distance"] for r in scores[task][method].values()]
                ax.hist(values, bins=20, range=(0, 0.84), histtype="step", label=method, linewidth=1.5)
            ax.set_xlabel("Jensen-Shannon distance per item")
            ax.set_ylabel("items")
            ax.set_title(f"{task}: JS distances")
            ax.legend()
            fig.tight_layout()
            _save(fig, plots / f"{task}_js.png")
        finally:
            plt.close(fig)


def _vectors(machine: dict) -> str:
    """``, vector extensions avx2, avx512f`` where the manifest records them (runs since they were recorded)."""
    vectors = machine.get("vector_extensions")
    return f", vector extensions {', '.join(vectors) or 'below AVX2'}" if isinstance(vectors, list) else ""
