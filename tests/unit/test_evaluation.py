"""VITAL tasks, scorers, the resumable runner and reports.

(No model: the parts that need one are in tests/integration/test_evaluation.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modplural.errors import ModPluralError
from modplural.protocol import MODPLURAL
from modplural.runs.config import load_config
from modplural.tasks import TASKS, load_task
from modplural.tasks.distributional import DistributionalTask
from modplural.tasks.steerable import SteerableOpinionQA, opinionqa_framing
from tests.helpers import SHARED_DATA, write_tiny_run_config

DATA = Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA))


def _write(tmp_path: Path, rows) -> Path:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(rows))
    return path


GOOD = {"question": "Q?", "options": ["a", "b"], "attribute": "POLPARTY_Democrat", "gold_distribution": [0.25, 0.75], "id": 1}


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_file_loads(name):
    task, path, items, skipped = load_task(name, DATA, MODPLURAL)
    assert items and len({i.id for i in items}) == len(items)
    assert all(i.query.text for i in items)
    if task.mode != "overton":
        assert all(i.query.options and len(i.query.options) >= 2 for i in items)


def test_framing_follows_the_original_wording():
    assert opinionqa_framing("POLPARTY_Democrat") == ("the people of Democrat in terms of political party", "In terms of political party, you are Democrat.")
    _, _, items, skipped = load_task("vital_steerable_opinionqa", DATA, MODPLURAL)
    assert skipped and all("single option" in s for s in skipped)  # left out with a note, never silently
    _, _, items, _ = load_task("vital_distributional_globalopinionqa", DATA, MODPLURAL)
    assert items[0].query.persona.startswith("You are from the country of ")


@pytest.mark.parametrize(
    "row, message",
    [
        ({k: v for k, v in GOOD.items() if k != "question"}, "item 1: missing field 'question'"),
        ({**GOOD, "gold_distribution": [0.5, 0.6]}, "item 1: field 'gold_distribution' must be non-negative and sum to 1"),
        ({**GOOD, "gold_distribution": [1.0]}, "item 1: field 'gold_distribution' must hold 2 numbers"),
        ({**GOOD, "options": "a,b"}, "item 1: field 'options' has the wrong type"),
        ({**GOOD, "attribute": "Democrat"}, "item 1: field 'attribute'"),
    ],
)
def test_bad_task_items_name_file_index_and_field(tmp_path, row, message):
    path = _write(tmp_path, [GOOD, row])
    with pytest.raises(ModPluralError, match=message) as info:
        SteerableOpinionQA().load(path, MODPLURAL)
    assert str(path) in str(info.value)


def test_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ModPluralError, match="not valid JSON"):
        DistributionalTask("d", False).load(tmp_path / "bad.json", MODPLURAL)
    with pytest.raises(ModPluralError, match="task file not found"):
        DistributionalTask("d", False).load(tmp_path / "none.json", MODPLURAL)


def test_sentence_splitting():
    from modplural.text import split_sentences

    assert split_sentences("It saves lives. But one dies! Is it fair?\nYes, e.g. sometimes.") == ["It saves lives.", "But one dies!", "Is it fair?", "Yes, e.g. sometimes."]
    assert split_sentences("") == []


@pytest.mark.parametrize("name", ["/tmp/outside", "../up", "a/b", "", ".hidden", "x" * 101])
def test_a_config_name_is_a_plain_name(tmp_path, name):
    with pytest.raises(ModPluralError, match="name must be a plain name"):
        load_config(write_tiny_run_config(tmp_path, tmp_path / "registry.yaml", name=name))


def test_an_empty_community_list_is_an_error(tmp_path):
    with pytest.raises(ModPluralError, match="communities is empty"):
        load_config(write_tiny_run_config(tmp_path, tmp_path / "registry.yaml", communities=[]))

