"""Stance by option likelihood: do the shipped adapters' views separate the intended poles when a view is read from
how likely each option's *text* is as the reply, instead of from a letter?

    python -m experiments.trials.stance_cloze_check                 # ~10 min on the 2-core machine (base + 9 adapters)
    python -m experiments.trials.stance_cloze_check --personas      # also the persona-prompt arm (about twice as long)

``modplural communities eval`` reads a view as the distribution over option letters after ``Answer:``, averaged over
every rotation of the options; for a 135M model most of one read is letter preference and the views end up near
uniform (``distinctness.md``). This check reads the same 69 questions the way lm-evaluation-harness scores multiple
choice for small models: each option's text, closed by the end-of-turn token, is scored as the assistant's whole
reply to the question (chat template; the community's persona as the system turn where the registry gives one), and
``p(option)`` is proportional to ``exp(sum of its tokens' log-probabilities)`` over the question's options. No
letters, no rotations. It was written after the letter reading had shown no separation (issue 14), so it is a
second measurement beside the first, not a replacement, and it changes nothing that is shipped.

Printed: the mean JS distance between the intended poles against every other community pair (all questions, the
pole's own axis), with a paired bootstrap over questions; and per pole pair the direction on its axis: the lean
``P(first option) - P(last option)``, where the file lists the most left / permissive option first (the political
question ``malpractice_caps`` lists the right-leaning option first and is counted reversed).
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations
from pathlib import Path

import numpy as np
from tqdm import tqdm

from modplural.assembly import StackSpec, assemble
from modplural.errors import ModPluralError
from modplural.metrics import js_distance, paired_bootstrap
from modplural.adapters.stance_questions import StanceQuestion, load_questions
from modplural.adapters.stances import POLES

REVERSED = {"malpractice_caps"}  # political questions whose first option is the right-leaning one
END_OF_TURN = "<|im_end|>"


def option_blocks(tokenizer, system: str | None, q: StanceQuestion) -> tuple[list[int], list[list[int]]]:
    """The question as a chat prompt (tokens) and, per option, the prompt followed by the option text as the reply."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q.question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    blocks = []
    for option in q.options:
        ids = tokenizer(prompt + option + END_OF_TURN, add_special_tokens=False)["input_ids"]
        if ids[: len(head)] != head:
            raise ModPluralError(f"question {q.id}: the prompt's tokens change when an option follows it; cannot score the option alone")
        blocks.append(ids)
    return head, blocks


def read_views(backend, voices: dict[str, tuple[str | None, str | None]], questions) -> dict[str, list[np.ndarray]]:
    """Per voice (name -> adapter, system prompt) and question: the distribution over its options from their likelihoods."""
    out: dict[str, list[np.ndarray]] = {}
    for name, (adapter, system) in tqdm(voices.items(), desc="voices"):
        blocks, spans = [], []
        for q in questions:
            head, options = option_blocks(backend.tokenizer, system, q)
            spans.append((len(blocks), len(options)))
            blocks += [head, *options]
        nll = [total for total, _ in backend.token_nll(blocks, [adapter] * len(blocks))]
        views = []
        for start, n in spans:
            logp = np.array([nll[start] - nll[start + 1 + k] for k in range(n)])  # log p(option text | prompt)
            p = np.exp(logp - logp.max())
            views.append(p / p.sum())
        out[name] = views
    return out


def lean(view: np.ndarray, reversed_: bool) -> float:
    """P(first option) - P(last option), the first being the left / permissive end."""
    value = float(view[0] - view[-1])
    return -value if reversed_ else value


def report(views: dict[str, list[np.ndarray]], communities: list[str], questions, arm: str) -> list[str]:
    axes = [q.axis for q in questions]
    js = {(a, b): np.array([js_distance(p, r) for p, r in zip(views[a], views[b])]) for a, b in combinations(communities, 2)}
    poles = {axis: pair for axis, pair in POLES.items() if set(pair) <= set(communities)}
    others = [pair for pair in js if tuple(pair) not in poles.values()]
    pole_js = np.mean([js[pair] for pair in poles.values()], axis=0)
    other_js = np.mean([js[pair] for pair in others], axis=0)
    test = paired_bootstrap(pole_js.tolist(), other_js.tolist())
    lines = [f"### {arm}", "",
             f"- Mean JS between communities: {np.mean(list(js.values())):.3f}; from the base model: "
             f"{np.mean([np.mean([js_distance(p, r) for p, r in zip(views['base'], views[c])]) for c in communities]):.3f}; "
             f"from uniform (how decided): {np.mean([js_distance(p, np.full(len(p), 1 / len(p))) for c in communities for p in views[c]]):.3f}.",
             f"- Intended poles {pole_js.mean():.3f} vs all other community pairs {other_js.mean():.3f} (difference {test['difference']:+.3f}, "
             f"95% CI [{test['ci95'][0]:+.3f}, {test['ci95'][1]:+.3f}], p = {test['p_value']:.3f}, {test['n']} questions).", "",
             "| pole pair | JS, own axis | JS, other questions | other pairs, own axis | poles minus other pairs, own axis | lean on own axis (first minus second) |",
             "|---|---|---|---|---|---|"]
    for axis, (a, b) in poles.items():
        own = [i for i, x in enumerate(axes) if x == axis]
        rest = [i for i, x in enumerate(axes) if x != axis]
        others_own = np.mean([js[pair][own] for pair in others], axis=0)
        gap = paired_bootstrap(js[(a, b)][own].tolist(), others_own.tolist())
        leans = [lean(views[a][i], questions[i].id in REVERSED) - lean(views[b][i], questions[i].id in REVERSED) for i in own]
        pair_test = paired_bootstrap(leans, [0.0] * len(leans))
        lines.append(f"| {a} vs {b} | {js[(a, b)][own].mean():.3f} | {js[(a, b)][rest].mean():.3f} | {others_own.mean():.3f} | {_ci(gap)} | {_ci(pair_test)} |")
    if {"health_news_left", "health_news_center", "health_news_right"} <= set(communities):  # the pole against its neighbours
        own = [i for i, x in enumerate(axes) if x == "political"]
        poles_js = js[("health_news_left", "health_news_right")][own]
        near = np.mean([js[_key(js, "health_news_left", "health_news_center")][own], js[_key(js, "health_news_center", "health_news_right")][own]], axis=0)
        lines += ["", f"- News on political questions: left vs right {poles_js.mean():.3f} against left vs center and center vs right "
                      f"{near.mean():.3f} (difference {_ci(paired_bootstrap(poles_js.tolist(), near.tolist()))})."]
    return lines + [""]


def _ci(test: dict) -> str:
    return f"{test['difference']:+.3f} [{test['ci95'][0]:+.3f}, {test['ci95'][1]:+.3f}]"


def _key(js: dict, a: str, b: str) -> tuple[str, str]:
    return (a, b) if (a, b) in js else (b, a)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", default=None, help="community registry (default: the shipped one)")
    p.add_argument("--personas", action="store_true", help="also read the persona-prompt arm (base model + each description)")
    p.add_argument("--save", default=None, help="also write each arm's views (JSON) next to this path")
    args = p.parse_args(argv)
    if args.save:  # before the reads: a folder that cannot be made fails now, not after ten minutes
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
    pool = assemble(StackSpec(registry=args.registry, cache=False, with_main=False)).pool
    questions = load_questions(None).questions
    names = pool.names
    arms = {"adapters": {"base": (None, None), **{c.name: (c.name, c.persona) for c in pool.communities}}}
    if args.personas:
        arms["persona prompts"] = {"base": (None, None), **{c.name: (None, c.description_persona) for c in pool.communities}}
    lines = [f"Option-likelihood stance reads: {len(questions)} questions, model {pool.backend.loaded.identity}.", ""]
    for arm, voices in arms.items():
        views = read_views(pool.backend, voices, questions)
        if args.save:
            Path(args.save).with_suffix(f".{arm.replace(' ', '_')}.json").write_text(json.dumps({v: [d.tolist() for d in ds] for v, ds in views.items()}))
        lines += report(views, names, questions, arm)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ModPluralError as exc:
        raise SystemExit(f"stance_cloze_check: error: {exc}")
    except OSError as exc:  # --save where nothing can be written
        raise SystemExit(f"stance_cloze_check: error: {exc.filename or ''}: {exc.strerror or exc}")
