"""Do the community adapters speak for their own communities? Held-out perplexity of every adapter on every
community's validation text, written as a Markdown matrix, a JSON file and a heatmap PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

from tqdm import tqdm

from modplural.backends.base import TokenScorer
from modplural.communities import Community
from modplural.errors import ModPluralError
from modplural.metrics import paired_bootstrap
from modplural.training.blocks import pack_blocks, read_passages

BASE = "base"
SPREAD = "evenly spaced"  # settings["blocks"]: how the validation blocks were sampled


Losses = dict[str, dict[str, list[float]]]  # losses[model][text_community]: mean token NLL of each sampled block


def spread_blocks(blocks: Sequence[list[int]], count: int) -> list[list[int]]:
    """``count`` blocks evenly spaced through the stream, so the sample covers the whole validation split (its first
    blocks can all come from one long document)."""
    count = min(count, len(blocks))
    return [blocks[i * len(blocks) // count] for i in range(count)]


def block_losses(
    backend: TokenScorer, communities: Sequence[Community], corpus_dir: Path, max_blocks: int = 32, seq_len: int = 128, progress: bool = True
) -> Losses:
    """Mean token NLL of the base model (``BASE``) and every adapter on ``max_blocks`` evenly spaced validation blocks
    of each community's text."""
    if not isinstance(backend, TokenScorer):
        raise ModPluralError(f"backend {type(backend).__name__} cannot score tokens: distinctness needs token_nll and a tokenizer, as the local engines have")
    models: list[str | None] = [None, *(c.name for c in communities)]
    losses: Losses = {m or BASE: {} for m in models}
    for text_community in tqdm([c.name for c in communities], desc="validation texts", disable=not progress):
        blocks = spread_blocks(pack_blocks(read_passages(corpus_dir / text_community / "valid.jsonl"), backend.tokenizer, seq_len), max_blocks)
        if not blocks:
            raise ModPluralError(f"no validation text for {text_community!r} in {corpus_dir}")
        rows = [(m, b) for m in models for b in blocks]
        scores = backend.token_nll([b for _, b in rows], [m for m, _ in rows])
        for model in models:
            losses[model or BASE][text_community] = [nll / count for (m, _), (nll, count) in zip(rows, scores) if m == model]
    return losses


def perplexity_matrix(losses: Losses) -> dict[str, dict[str, float]]:
    """``matrix[model][text_community]``: perplexity over the sampled blocks (all blocks have ``seq_len`` tokens)."""
    return {model: {text: math.exp(sum(v) / len(v)) for text, v in row.items()} for model, row in losses.items()}


def own_margins(losses: Losses) -> dict[str, dict]:
    """Per community with an adapter: its own adapter against the best *other* adapter on its validation text, as the
    mean per-token log-perplexity difference over blocks (negative: own is better) with a paired bootstrap 95% CI."""
    adapters = [m for m in losses if m != BASE]
    margins = {}
    for text in losses[BASE]:
        if text not in losses:
            continue
        rival = min((a for a in adapters if a != text), key=lambda a: sum(losses[a][text]), default=None)
        if rival is not None:
            margins[text] = {"rival": rival, **paired_bootstrap(losses[text][text], losses[rival][text])}
    return margins


def verdict(matrix: dict[str, dict[str, float]]) -> dict:
    """Per community: does its own adapter beat the base model, and is it the best of all adapters?"""
    texts = list(matrix[BASE])
    adapters = [m for m in matrix if m != BASE]
    rows = {}
    for text in texts:
        best = min(adapters, key=lambda a: matrix[a][text])
        own = matrix.get(text, {}).get(text)
        rows[text] = {"own": own, "base": matrix[BASE][text], "best_adapter": best, "own_beats_base": own is not None and own < matrix[BASE][text], "own_is_best": best == text}
    return {
        "communities": rows,
        "own_beats_base": sum(r["own_beats_base"] for r in rows.values()),
        "own_is_best": sum(r["own_is_best"] for r in rows.values()),
        "total": len(rows),
    }


def write_report(losses: Losses, out_dir: Path, header: str, settings: dict | None = None,
                 more_markdown: Sequence[str] = (), more_json: Mapping | None = None) -> dict:
    """Write distinctness.md, distinctness.json (with ``settings``: how it was measured) and distinctness.png into ``out_dir``;
    ``more_markdown`` lines follow the perplexity section, ``more_json`` entries the perplexity matrix (e.g. the stances)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    matrix, margins = perplexity_matrix(losses), own_margins(losses)
    result = verdict(matrix)
    result["own_is_clearly_best"] = sum(m["ci95"][1] < 0 for m in margins.values())
    texts = list(matrix[BASE])
    lines = [header, "", "## Held-out perplexity: does each adapter speak like its community?", "", "Perplexity (lower is better). Rows: model; columns: the community whose validation text is scored.",
             "**Bold**: the lowest adapter perplexity in the column; the diagonal is each community's own adapter.", ""]
    lines.append("| model | " + " | ".join(texts) + " |")
    lines.append("|---|" + "---|" * len(texts))
    for model, row in matrix.items():
        cells = []
        for text in texts:
            cell = f"{row[text]:.2f}"
            cells.append(f"**{cell}**" if model != BASE and result["communities"][text]["best_adapter"] == model else cell)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", f"- Own adapter beats the base model on its own validation text: **{result['own_beats_base']}/{result['total']}**",
              f"- Own adapter is the best of all adapters on its own validation text: **{result['own_is_best']}/{result['total']}**"]
    misses = [f"{t} (best: {r['best_adapter']})" for t, r in result["communities"].items() if not r["own_is_best"]]
    if misses:
        lines.append(f"- Where another adapter wins: {', '.join(misses)}")
    lines += _margin_lines(margins, result)
    (out_dir / "distinctness.md").write_text("\n".join([*lines, *more_markdown]) + "\n")
    data = {"perplexity": matrix, "verdict": result, "own_margins": margins, "settings": settings or {}, **(more_json or {})}
    (out_dir / "distinctness.json").write_text(json.dumps(data, indent=2) + "\n")
    _heatmap(matrix, out_dir / "distinctness.png")
    return result


def _margin_lines(margins: dict[str, dict], result: dict) -> list[str]:
    """How sure the own-best verdicts are: own adapter minus the best other adapter, per block, bootstrapped."""
    if not margins:
        return []
    counts = sorted({m["n"] for m in margins.values()})
    blocks = f"the {counts[0]} blocks" if len(counts) == 1 else f"each text's blocks, {counts[0]}-{counts[-1]},"
    lines = [f"- Own adapter better than every other adapter with the 95% interval below zero: **{result['own_is_clearly_best']}/{len(margins)}**", "",
             f"Own adapter minus the best other adapter on its own validation text: mean per-token log-perplexity difference over {blocks} "
             "(negative: own is better; ×100 ≈ percent perplexity), paired bootstrap 95% interval over blocks.", "",
             "| community | best other adapter | difference | 95% CI |", "|---|---|---|---|"]
    for text, m in margins.items():
        lines.append(f"| {text} | {m['rival']} | {m['difference']:+.4f} | [{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}] |")
    return lines


def _heatmap(matrix: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models, texts = list(matrix), list(matrix[BASE])
    values = np.array([[matrix[m][t] for t in texts] for m in models])
    relative = values / values[0:1, :]  # perplexity relative to the base model, per column
    fig, ax = plt.subplots(figsize=(1.1 * len(texts) + 3, 0.55 * len(models) + 2))
    image = ax.imshow(relative, cmap="viridis_r")
    ax.set_xticks(range(len(texts)), texts, rotation=45, ha="right")
    ax.set_yticks(range(len(models)), models)
    for i in range(len(models)):
        for j in range(len(texts)):
            ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=7, color="white" if relative[i, j] < relative[:, j].mean() else "black")
    ax.set_xlabel("validation text of community")
    ax.set_ylabel("model")
    fig.colorbar(image, ax=ax, label="perplexity / base-model perplexity")
    ax.set_title("Held-out perplexity of community adapters")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
