"""The two protocols: the original scripts' prompts word for word, their answer reading and metric definitions,
and the exact label reading of the modplural protocol, on the real tokenizer and model.

(On the real model: the parts that need none are in tests/unit/test_protocol.py.)"""

from __future__ import annotations

import pytest

from modplural.backends.base import OptionRequest

LABELS = ["A", "B", "C", "D", "E", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
WHITESPACE = ["", " ", "\n", "\n\n", "  ", "\t", " \n"]


def _protocol_config(tmp_path, registry, **extra):
    import yaml

    config = {
        "name": "proto", "tasks": ["vital_overton", "vital_steerable_vk", "vital_steerable_opinionqa"], "methods": ["vanilla", "moe", "modular"],
        "registry": str(registry), "limit": 3, "chunk_size": 2, "message_tokens": 6, "main_tokens": 6, "device": "cpu", "cache": False, **extra,
    }
    path = tmp_path / "proto.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def original_run(adapter_dirs, tmp_path_factory):
    """A finished tiny run under protocol original (real model, two random adapters, real VITAL items)."""
    from tests.helpers import run_cli, write_registry

    tmp = tmp_path_factory.mktemp("original_run")
    config = _protocol_config(tmp, write_registry(tmp / "registry.yaml", adapter_dirs))
    out = tmp / "run"
    result = run_cli("run", str(config), "--protocol", "original", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    return config, out


def test_every_real_spelling_of_a_label_is_read(backend):
    """Every way SmolLM2's tokenizer spells a label after whitespace is a path the exact reading follows: a token
    that strips to the label, after zero or more whitespace-only tokens (" 1" = Ġ 1, "\\nA" = Ċ A, "\\n\\nA" = Ċ Ċ A)."""
    from modplural.backends.label_tokens import LabelTokens
    from modplural.backends.local import WHITESPACE_DEPTH

    tokens = LabelTokens(backend.tokenizer)
    whitespace = set(tokens.whitespace)
    multi = 0
    for label, ids in zip(LABELS, tokens.ids(LABELS)):
        for space in WHITESPACE:
            spelled = backend.tokenizer(space + label, add_special_tokens=False)["input_ids"]
            *lead, last = spelled
            assert last in ids, (space, label, backend.tokenizer.convert_ids_to_tokens(spelled))
            assert all(t in whitespace for t in lead) and len(lead) <= WHITESPACE_DEPTH
            multi += bool(lead)
    assert multi >= len(LABELS) * 3  # the multi-token spellings are real on this tokenizer


def test_exact_reading_equals_the_chain_rule(backend):
    """option_probs against a direct computation: P(label) = sum of P(label token) + P(w) * P(label token | w) over
    whitespace tokens w (and one level deeper for the likeliest), from separate unbatched forward passes."""
    import torch

    from modplural.backends.label_tokens import LabelTokens

    prompt = "Pick one number from 1 to 3 and write only the number.\nNumber:"
    labels = ("1", "2", "3")
    [result] = backend.option_probs([OptionRequest(labels=labels, prompt=prompt)])
    tokens = LabelTokens(backend.tokenizer)
    label_ids = tokens.ids(labels)
    ids = backend.tokenizer(prompt)["input_ids"]

    def probs(seq):
        with torch.inference_mode():
            logits = backend.loaded.model(torch.tensor([seq])).logits[0, -1]
        return torch.softmax(logits.double(), -1)

    def mass(seq, depth):
        p = probs(seq)
        direct = [float(p[i].sum()) for i in label_ids]
        if depth == 0:
            return direct
        for w in tokens.whitespace:
            if p[w] > 1e-4:
                deeper = mass(seq + [w], depth - 1)
                direct = [d + float(p[w]) * x for d, x in zip(direct, deeper)]
        return direct

    expected = mass(ids, 2)
    one_token = [float(probs(ids)[i].sum()) for i in label_ids]
    assert sum(expected) > sum(one_token) + 0.05  # " 1" (Ġ then 1) carries real mass here
    assert result.mass == pytest.approx(sum(expected), abs=2e-3)
    assert list(result.probs) == pytest.approx([e / sum(expected) for e in expected], abs=2e-3)
    assert 0 <= result.unread < 2e-3


@pytest.mark.slow
def test_original_run_is_the_original_protocol_and_rescoring_reproduces_it(original_run, tiny_nli, tmp_path):
    import json
    import os

    from modplural.runs.directory import RunDir
    from tests.helpers import run_cli

    _, out = original_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"]["prompts"] == "original" and manifest["protocol"]["answer_reading"] == "top10" and manifest["protocol"]["steer_tokens"] == 20
    vk = [r["result"] for r in RunDir(out).read_predictions("vital_steerable_vk", "modular")]
    assert all(r["distribution"] is None and isinstance(r["response"], str) and r["selection_text"] is not None for r in vk)  # free text, sampled selection
    before = (out / "metrics.json").read_bytes()
    empty_cache = tmp_path / "cache"
    empty_cache.mkdir()
    scored = run_cli("score", str(out), env={"MODPLURAL_CACHE": str(empty_cache)})
    assert scored.returncode == 0, scored.stderr
    assert (out / "metrics.json").read_bytes() == before  # exactly the run's metrics
    assert not any(empty_cache.iterdir())  # the generator was never loaded (it would have filled the model cache)
    nli = run_cli("score", str(out), "--scorer", "nli", "--nli-model", str(tiny_nli))
    assert nli.returncode == 0, nli.stderr
    assert (out / "metrics.json").read_bytes() == before
    other = json.loads((out / "metrics.nli.json").read_text())
    ours = json.loads(before)
    assert other["scorer"]["name"] == "nli" and ours["scorer"]["name"] == "embedding"
    assert other["tasks"]["vital_steerable_vk"] == ours["tasks"]["vital_steerable_vk"]
    assert other["tasks"]["vital_overton"]["modular"]["coverage"] != ours["tasks"]["vital_overton"]["modular"]["coverage"]
    report = run_cli("report", str(out))
    assert report.returncode == 0, report.stderr
    assert "Protocol: `original+" in (out / "report.md").read_text()
    assert os.environ.get("MODPLURAL_CACHE") != str(empty_cache)


@pytest.mark.slow
def test_scoring_and_reading_run_directories_fail_in_one_line(original_run, tmp_path):
    import json
    import shutil

    from modplural.runs.directory import RunDir
    from tests.helpers import assert_one_line_error, run_cli

    config, out = original_run
    for command in (["run", str(config), "--out", str(tmp_path / "x")], ["ask", "Is it safe?"]):  # the choices come from PROTOCOLS
        assert_one_line_error(run_cli(*command, "--protocol", "paper"), "argument --protocol: invalid choice: 'paper' (choose from 'original', 'modplural')")
    assert_one_line_error(run_cli("score", str(tmp_path)), "no manifest.json")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(out, unfinished)
    manifest = json.loads((unfinished / "manifest.json").read_text())
    manifest.pop("finished")
    (unfinished / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_cli("score", str(unfinished)), "the run is unfinished")
    empty = tmp_path / "empty"
    shutil.copytree(out, empty)
    shutil.rmtree(RunDir(empty).predictions_dir)
    assert_one_line_error(run_cli("score", str(empty)), "have no prediction")
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    path = RunDir(broken).predictions_path("vital_steerable_opinionqa", "modular")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    assert_one_line_error(run_cli("score", str(broken)), f"{path}: line 2 is not valid JSON")
    assert run_cli("report", str(broken)).returncode == 0  # the report reads metrics and scores, never predictions
    assert len(path.read_text().splitlines()) == len(lines) + 1  # nothing dropped by score or report
    torn = tmp_path / "torn"
    shutil.copytree(out, torn)
    path = RunDir(torn).predictions_path("vital_steerable_opinionqa", "vanilla")
    path.write_text(path.read_text() + '{"id": "cut')
    assert_one_line_error(run_cli("score", str(torn)), "line 4 is incomplete")
    with RunDir(torn).lock():
        locked = run_cli("run", str(config), "--protocol", "original", "--out", str(torn), "--no-progress")
    assert_one_line_error(locked, "in use by another modplural run (pid ")
    resumed = run_cli("run", str(config), "--protocol", "original", "--out", str(torn), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "dropping an incomplete last line" in resumed.stderr and len(path.read_text().splitlines()) == 3

