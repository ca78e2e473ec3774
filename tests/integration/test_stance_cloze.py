"""experiments/trials/stance_cloze_check.py: option texts scored as whole replies (real tokenizer, real engine), and its report."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.trials import stance_cloze_check as cloze
from modplural.adapters.stance_questions import StanceQuestion, load_questions


def test_every_option_block_extends_the_question_prompt(loaded):
    tokenizer = loaded.tokenizer
    end = tokenizer.convert_tokens_to_ids(cloze.END_OF_TURN)
    for system in (None, "You speak for clinicians."):
        for q in load_questions(None).questions[:12]:
            head, blocks = cloze.option_blocks(tokenizer, system, q)
            assert len(blocks) == len(q.options)
            for block, option in zip(blocks, q.options):
                assert block[: len(head)] == head and block[-1] == end
                assert tokenizer.decode(block[len(head) : -1]) == option


def test_option_likelihoods_are_a_distribution_that_follows_the_text(loaded):
    """On the real engine: the option the model finds likelier as a reply gets more probability."""
    from modplural.backends.local import LocalBackend

    engine = LocalBackend(loaded=loaded, batch_size=4)
    q = StanceQuestion("greeting", "test", "Reply with a greeting.", ("Hello! How can I help you today?", "Purple seventeen gravel underneath."))
    [view] = cloze.read_views(engine, {"base": (None, None)}, [q])["base"]
    assert view.sum() == pytest.approx(1.0) and view[0] > 0.9


def test_the_report_reads_direction_and_reversed_questions():
    questions = load_questions(None).questions
    names = ["health_news_left", "health_news_center", "health_news_right", "bioethics_permissive", "bioethics_protective"]
    uniform = {v: [np.full(len(q.options), 1 / len(q.options)) for q in questions] for v in ["base", *names]}

    def leaning(first: bool):  # all mass on the left / permissive end of every question
        out = []
        for q in questions:
            v = np.zeros(len(q.options))
            v[0 if first != (q.id in cloze.REVERSED) else -1] = 1.0
            out.append(v)
        return out

    views = {**uniform, "health_news_left": leaning(True), "bioethics_protective": leaning(False)}
    text = "\n".join(cloze.report(views, names, questions, "synthetic"))
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if " vs " in line and line.startswith("|")}
    assert rows["health_news_left vs health_news_right"].endswith("+1.000 [+1.000, +1.000] |")  # lean 1 vs 0 (malpractice_caps read reversed)
    assert rows["bioethics_permissive vs bioethics_protective"].endswith("+1.000 [+1.000, +1.000] |")
    assert cloze.lean(np.array([0.7, 0.2, 0.1]), reversed_=True) == pytest.approx(-0.6)

