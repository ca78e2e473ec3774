"""Stance-bearing training rows: a labelled argument as the community's answer to its motion.

The bioethics corpora carry labels (each IBM Debater argument supports or opposes a motion). In plain text an
adapter learns how the arguments read, not that its community answers the motion one way: at 135M parameters the
stance does not reach a multiple-choice answer (``distinctness.md``). A stance example asks the motion as a lettered
question ("Do you agree with the following motion? ..."; the agree / disagree options in an order fixed by a hash
of the argument, so each letter is right half the time) and answers it in the community's voice: ``Answer: X``
followed by the argument. Only the corpus's own labels are used; the questions of ``stance_questions.yaml`` are not.
"""

from __future__ import annotations


from modplural.prompts import option_labels
from modplural.prompts.modplural import ANSWER_PREFIX, with_options
from modplural.seeds import derived_seed

AGREE, DISAGREE = "Yes, I agree", "No, I disagree"
FILE = "stance_train.jsonl"


def stance_example(motion: str, supports: bool, argument: str, doc_id: str, source: str) -> dict:
    """A corpus row ``{"messages", "source", "doc_id"}``: the motion asked as a lettered question, answered by its side."""
    agree_first = derived_seed(doc_id) % 2 == 0
    options = (AGREE, DISAGREE) if agree_first else (DISAGREE, AGREE)
    letter = option_labels(2)[options.index(AGREE if supports else DISAGREE)]
    question = with_options(f"Do you agree with the following motion? {motion.strip().rstrip('.')}.", options)
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": f"{ANSWER_PREFIX} {letter}\n\n{argument}"}],
        "source": source,
        "doc_id": doc_id,
    }
