"""The training recipe's checks before any model loads: its config values, its output directory (never a directory of the user's files), its
warm-up and its block order."""

from __future__ import annotations

import shutil
import time
import tracemalloc
from itertools import islice
from pathlib import Path

import pytest

from modplural.errors import ModPluralError
from modplural.training.config import load_train_config
from modplural.training.lora import _block_order, _swap_in, check_output_dir, train
from tests.helpers import assert_one_line_error, run_cli, write_corpus

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "training" / "configs" / "_smollm2_cpu.yaml"
SHIPPED = REPO / "community_models" / "SmolLM2-135M-Instruct" / "clinicians"


def _configs(tmp_path: Path, *communities: str) -> Path:
    """Training configs whose base model cannot load: an error that comes before the model is the one checked."""
    configs = tmp_path / "configs"
    configs.mkdir(parents=True)
    for community in communities:
        (configs / f"{community}.yaml").write_text(f"extends: {RECIPE}\ncommunity: {community}\nbase_model: {tmp_path / 'no-model'}\n")
    return configs


def _train_cli(tmp_path: Path, output_dir: Path):
    corpora = write_corpus(tmp_path / "corpora")
    return run_cli("train", "--community", "patients", "--config-dir", str(_configs(tmp_path, "patients")), "--corpus-dir", str(corpora),
                   "--output-dir", str(output_dir), "--device", "cpu")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _eager_order(n_blocks: int, needed: int, seed: int) -> list[int]:
    """The order as it used to be built, all at once (runs resumed across versions depend on it)."""
    import torch

    order: list[int] = []
    epoch = 0
    while len(order) < needed:
        order.extend(torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist())
        epoch += 1
    return order[:needed]


PATIENTS = REPO / "training" / "configs" / "patients.yaml"


def test_training_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("community: patients\nlearning_rat: 0.1\n")
    with pytest.raises(ModPluralError, match="unknown field 'learning_rat'"):
        load_train_config(bad)
    bad.write_text("community: patients\nlearning_rate: -1\n")
    with pytest.raises(ModPluralError, match="learning_rate"):
        load_train_config(bad)
    bad.write_text("community: patients\nr: eight\n")
    with pytest.raises(ModPluralError, match="field 'r' has a bad value"):
        load_train_config(bad)


def test_training_cli_errors(tmp_path):
    assert_one_line_error(run_cli("train", "--community", "nurses"), "unknown community 'nurses'")
    assert_one_line_error(run_cli("train"), "--community NAME or --all")
    (tmp_path / "patients.yaml").write_text("community: patients\ndropout: 2\n")
    assert_one_line_error(run_cli("train", "--community", "patients", "--config-dir", str(tmp_path)), "dropout")
    (tmp_path / "patients.yaml").write_text(f"community: patients\ncorpus_dir: {tmp_path}\n")
    assert_one_line_error(run_cli("train", "--community", "patients", "--config-dir", str(tmp_path)), "corpus file missing")


def test_train_refuses_a_directory_of_the_users_files_before_the_model_loads(tmp_path):
    thesis = tmp_path / "thesis"
    (thesis / "sub").mkdir(parents=True)
    (thesis / "thesis.txt").write_text("four years of work")
    (thesis / "sub" / "notes.txt").write_text("notes")
    before = _tree(thesis)
    result = _train_cli(tmp_path, thesis)
    assert_one_line_error(result, f"output directory {thesis} is not empty and holds files modplural did not write (sub, thesis.txt)",
                          "choose another --output-dir (or output_dir), or move them away yourself")
    assert _tree(thesis) == before and not thesis.with_name("thesis.old").exists() and not thesis.with_name("thesis.partial").exists()
    assert "no-model" not in result.stderr  # refused before the (unloadable) base model was looked at
    config = load_train_config(_configs(tmp_path / "lib", "patients") / "patients.yaml", corpus_dir=str(tmp_path / "corpora"), output_dir=str(thesis))
    with pytest.raises(ModPluralError, match=f"^output directory {thesis} is not empty"):
        train(config, progress=False)  # the library call checks first too
    assert _tree(thesis) == before


def test_train_refuses_a_file_as_output_dir(tmp_path):
    target = tmp_path / "adapter.bin"
    target.write_bytes(b"precious")
    result = _train_cli(tmp_path, target)
    assert_one_line_error(result, f"output directory {target} is a file, not a directory", "choose another --output-dir")
    assert target.read_bytes() == b"precious" and not target.with_name("adapter.bin.old").exists()


def test_train_all_refuses_one_output_dir_for_two_communities(tmp_path):
    corpora = write_corpus(tmp_path / "corpora")
    result = run_cli("train", "--all", "--config-dir", str(_configs(tmp_path, "clinicians", "patients")), "--corpus-dir", str(corpora),
                     "--output-dir", str(tmp_path / "out"), "--device", "cpu")
    assert_one_line_error(result, "communities 'clinicians' and 'patients' would both be written to", "put {community} in --output-dir")


def test_what_training_may_replace(tmp_path):
    check_output_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty")
    ours = shutil.copytree(SHIPPED, tmp_path / "ours")  # a finished adapter as training leaves it
    check_output_dir(ours)
    (ours / "results.csv").write_text("mine")  # our adapter, plus a file of the user's
    with pytest.raises(ModPluralError, match=r"ours is not empty and holds files modplural did not write \(results.csv\); modplural replaces only an adapter"):
        check_output_dir(ours)
    foreign = tmp_path / "foreign"  # a PEFT adapter trained elsewhere: no training manifest
    foreign.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(SHIPPED / name, foreign / name)
    with pytest.raises(ModPluralError, match=r"did not write \(adapter_config.json, adapter_model.safetensors\)"):
        check_output_dir(foreign)
    (tmp_path / "link").symlink_to(SHIPPED)
    with pytest.raises(ModPluralError, match="is a symbolic link"):
        check_output_dir(tmp_path / "link")
    (tmp_path / "run.partial").mkdir()  # the checkpoint directory beside the output is checked too
    (tmp_path / "run.partial" / "draft.md").write_text("mine")
    partial = r"checkpoint directory .*run.partial is not empty and holds files modplural did not write \(draft.md\); modplural replaces only an interrupted"
    with pytest.raises(ModPluralError, match=partial):
        check_output_dir(tmp_path / "run")


def test_our_previous_adapter_is_replaced_whole_and_nothing_beside_it_is_touched(tmp_path):
    final = shutil.copytree(SHIPPED, tmp_path / "patients")
    (tmp_path / "patients.old").mkdir()  # a user's directory under the name the old code removed
    (tmp_path / "patients.old" / "keep.txt").write_text("mine")
    new = tmp_path / "patients.partial" / "adapter"
    new.mkdir(parents=True)
    (new / "training_manifest.json").write_text("{}")
    _swap_in(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["training_manifest.json"] and not new.exists()
    assert (tmp_path / "patients.old" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patients", "patients.old", "patients.partial"]  # nothing left aside


@pytest.mark.parametrize("n_blocks, seed", [(1, 0), (7, 0), (50, 3)])
def test_the_lazy_block_order_is_the_eager_one(n_blocks, seed):
    eager = _eager_order(n_blocks, 400, seed)
    assert list(islice(_block_order(n_blocks, seed), 400)) == eager
    for start in (0, 1, n_blocks - 1, n_blocks, 3 * n_blocks + 2, 333):  # a resumed run starts mid-sequence
        assert list(islice(_block_order(n_blocks, seed, start), 400 - start)) == eager[start:]


def test_a_huge_step_count_costs_one_epoch():
    next(_block_order(2, 0))  # torch imported before memory is traced
    tracemalloc.start()
    started = time.monotonic()
    steps, per_step = 1_000_000_000, 4
    first = list(islice(_block_order(500, 0), 3 * per_step))
    last = list(islice(_block_order(500, 0, (steps - 1) * per_step), per_step))  # the last step of --max-steps 1000000000
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - started < 5 and peak < 5_000_000
    assert len(first) == 12 and len(last) == 4 and all(0 <= i < 500 for i in first + last)


def test_max_steps_below_the_warmup_lowers_the_warmup(capsys):
    config = load_train_config(PATIENTS, max_steps=2)  # the shipped recipe warms up for 10 steps
    assert (config.max_steps, config.warmup_steps) == (2, 1)
    assert capsys.readouterr().err == f"modplural: note: {PATIENTS}: warmup_steps 10 lowered to 1 for max_steps 2\n"
    assert load_train_config(PATIENTS, max_steps=2, warmup_steps=0).warmup_steps == 0  # an explicit warm-up is kept
    assert load_train_config(PATIENTS, max_steps=1).warmup_steps == 0
    assert load_train_config(PATIENTS, max_steps=40).warmup_steps == 10
    assert capsys.readouterr().err.count("modplural: note:") == 1  # only max_steps=1 needed it


def test_a_config_file_whose_warmup_is_too_long_is_still_an_error(tmp_path):
    path = tmp_path / "patients.yaml"
    path.write_text(f"extends: {REPO / 'training' / 'configs' / '_smollm2_cpu.yaml'}\ncommunity: patients\nmax_steps: 5\n")
    with pytest.raises(ModPluralError, match=r"warmup_steps' must be in \[0, max_steps\), got 10"):
        load_train_config(path)
    with pytest.raises(ModPluralError, match=r"warmup_steps' must be in \[0, max_steps\), got 3"):
        load_train_config(path, max_steps=2, warmup_steps=3)


@pytest.mark.parametrize("output_dir", ["out/{name}", "out/{0}", "out/{community", "out/{community.upper}"])
def test_unknown_output_dir_placeholder_is_a_config_error(output_dir):
    with pytest.raises(ModPluralError, match=r"field 'output_dir' .* has a placeholder other than \{community\}"):
        load_train_config(PATIENTS, output_dir=output_dir)
    assert load_train_config(PATIENTS, output_dir="out/{{literal}}/{community}").adapter_dir.parts[-2:] == ("{literal}", "patients")


def test_cli_unknown_output_dir_placeholder_fails_before_the_model_loads(tmp_path):
    corpora = write_corpus(tmp_path / "corpora")
    configs = tmp_path / "configs"
    configs.mkdir()
    # a base model that cannot load: the error must come from the output directory, found first
    (configs / "patients.yaml").write_text(f"extends: {REPO / 'training' / 'configs' / '_smollm2_cpu.yaml'}\ncommunity: patients\nbase_model: {tmp_path / 'no-model'}\n")
    result = run_cli("train", "--community", "patients", "--config-dir", str(configs), "--corpus-dir", str(corpora),
                     "--output-dir", str(tmp_path / "{name}"), "--device", "cpu")
    assert_one_line_error(result, "field 'output_dir'", "{name}", "has a placeholder other than {community}")

