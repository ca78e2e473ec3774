"""Do the stance-example bioethics adapters hold different views? Their stance reads against the shipped adapters'.

    modplural train --all --config-dir training/configs/stance_examples     # ~16 min on the 2-core machine
    python -m experiments.trials.stance_examples_check                             # ~5 min: 69 questions x (base + 2 adapters + 2 personas)

Reads every question of ``stance_questions.yaml`` (all rotations, as ``modplural communities eval`` does) for the
retrained pair only, and compares with the reads of the shipped adapters stored in ``distinctness.json``: the JS
distance between the two poles (all questions, bioethics questions on and off the training motions' topics, other
axes) against the mean over the other community pairs, how far the views lean to the first option (in this file
every bioethics question lists its most permissive option first and its most protective last) and the probability on
the option letters; then each adapter's validation loss against the base model's from its training manifest.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np
import yaml

from modplural.assembly import StackSpec, assemble
from modplural.metrics import js_distance
from modplural.adapters.stance_questions import load_questions
from modplural.adapters.stances import ADAPTERS, measure_stances

REPO = Path(__file__).resolve().parents[2]
POLES = ("bioethics_permissive", "bioethics_protective")
# bioethics questions whose topic is one of the training motions (motions.py)
ON_MOTION_TOPICS = {"assisted_dying", "assisted_dying_mental_illness", "dementia_advance_request", "human_cloning", "kidney_sales",
                    "cosmetic_surgery_minors", "commercial_surrogacy", "sex_selection", "embryonic_stem_cells", "homeopathy", "naturopaths"}


def views(reads: dict) -> dict[str, list[np.ndarray]]:
    """Per voice and question, the mean over rotations."""
    return {voice: [np.mean(r, axis=0) for r in per_question] for voice, per_question in reads.items()}


def mean_js(a: list, b: list, idx: list[int]) -> float:
    return float(np.mean([js_distance(a[i], b[i]) for i in idx]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapters", default="build/adapters/stance_examples", help="folder holding the retrained <community>/ adapters")
    p.add_argument("--results", default="community_models/SmolLM2-135M-Instruct/distinctness.json", help="the shipped adapters' stored reads")
    args = p.parse_args(argv)
    shipped = yaml.safe_load((REPO / "community_models" / "registry.yaml").read_text())
    for c in shipped["communities"]:
        c["adapter"] = str((REPO / args.adapters / c["name"]) if c["name"] in POLES else REPO / "community_models" / c["adapter"])
    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "registry.yaml"
        registry.write_text(yaml.safe_dump(shipped))
        pool = assemble(StackSpec(communities=list(POLES), registry=registry, cache=False, with_main=False)).pool
        questions = load_questions(None)
        result = measure_stances(pool.backend, pool.communities, questions)
    stored = json.loads((REPO / args.results).read_text())["stances"]
    old = views(stored["reads"][ADAPTERS])
    new = {**old, **{k: v for k, v in views(result.reads[ADAPTERS]).items() if k in POLES}}
    names = [n for n in old if n != "base"]
    other_pairs = [(a, b) for a, b in combinations(names, 2) if {a, b} != set(POLES) and {a, b} != {"health_news_left", "health_news_right"}]
    qs = questions.questions
    groups = {"all questions": range(len(qs)),
              "bioethics, on a training motion's topic": [i for i, q in enumerate(qs) if q.axis == "bioethics" and q.id in ON_MOTION_TOPICS],
              "bioethics, other topics": [i for i, q in enumerate(qs) if q.axis == "bioethics" and q.id not in ON_MOTION_TOPICS],
              "other axes": [i for i, q in enumerate(qs) if q.axis != "bioethics"]}
    print("| questions | n | poles, shipped | poles, stance examples | other pairs (with the new pair's members) |\n|---|---|---|---|---|")
    for label, idx in groups.items():
        idx = list(idx)
        others = np.mean([mean_js(new[a], new[b], idx) for a, b in other_pairs])
        print(f"| {label} | {len(idx)} | {mean_js(old[POLES[0]], old[POLES[1]], idx):.3f} | {mean_js(new[POLES[0]], new[POLES[1]], idx):.3f} | {others:.3f} |")
    bio = groups["bioethics, on a training motion's topic"] + groups["bioethics, other topics"]
    print("\n| adapter | lean to the permissive end, shipped | lean, stance examples | letter mass, shipped | letter mass, stance examples | validation loss (base) |\n|---|---|---|---|---|---|")
    for name in POLES:
        lean = {k: float(np.mean([v[name][i][0] - v[name][i][-1] for i in bio])) for k, v in (("old", old), ("new", new))}
        manifest = json.loads((REPO / args.adapters / name / "training_manifest.json").read_text())
        print(f"| {name} | {lean['old']:+.3f} | {lean['new']:+.3f} | {np.mean(stored['label_mass'][ADAPTERS][name]):.2f} | "
              f"{np.mean(result.mass[ADAPTERS][name]):.2f} | {manifest['valid_loss']:.3f} ({manifest['valid_loss_base']:.3f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
