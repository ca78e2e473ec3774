"""Training checkpoints: a damaged state is one line, and resuming never unpickles code from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[2]


class _CreatesMarker:
    """A pickle payload that creates ``marker`` when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tiny_run(tmp_path: Path) -> tuple[Path, list[str]]:
    """A real training config, corpus and checkpoint (one step of three); returns the checkpoint and the CLI args to resume."""
    from modplural.training.config import load_train_config
    from modplural.training.lora import train

    corpus = tmp_path / "corpora" / "patients"
    corpus.mkdir(parents=True)
    passage = "My doctor listened to my worries about the new treatment and explained the side effects slowly and kindly. "
    for split, n in (("train", 12), ("valid", 3)):
        (corpus / f"{split}.jsonl").write_text("".join(json.dumps({"text": f"{i}. {passage * 2}"}) + "\n" for i in range(n)))
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "patients.yaml").write_text(
        f"extends: {REPO / 'training' / 'configs' / '_smollm2_cpu.yaml'}\ncommunity: patients\nseq_len: 16\nbatch_size: 2\nwarmup_steps: 1\ncheckpoint_every: 1\neval_blocks: 1\n"
    )
    overrides = {"max_steps": 3, "corpus_dir": str(tmp_path / "corpora"), "output_dir": str(tmp_path / "out" / "{community}"), "device": "cpu"}
    train(load_train_config(configs / "patients.yaml", **overrides), progress=False, stop_after=1)
    args = ["train", "--community", "patients", "--config-dir", str(configs), "--max-steps", "3", "--corpus-dir", overrides["corpus_dir"],
            "--output-dir", overrides["output_dir"], "--device", "cpu"]
    return tmp_path / "out" / "patients.partial" / "checkpoint", args


@pytest.mark.slow
@pytest.mark.parametrize("state", ["{not json", "[" * 100000, '{"step": 1}'])
def test_a_damaged_checkpoint_state_is_one_line(tmp_path, state):
    checkpoint, args = _tiny_run(tmp_path)
    (checkpoint / "state.json").write_text(state)
    result = run_cli(*args)
    assert_one_line_error(result, str(checkpoint), "--restart")


@pytest.mark.slow
def test_resuming_never_unpickles_code_from_a_checkpoint(tmp_path):
    from modplural.training.lora import _load_optimizer_state

    checkpoint, args = _tiny_run(tmp_path)
    genuine = _load_optimizer_state(checkpoint / "optimizer.pt")  # a real checkpoint loads with weights_only=True
    assert genuine["optimizer"]["state"] and genuine["scheduler"]["last_epoch"] == 1
    live = tmp_path / "live-marker"
    torch.save({"optimizer": _CreatesMarker(live)}, tmp_path / "live.pt")
    torch.load(tmp_path / "live.pt", weights_only=False)
    assert live.exists()  # the payload does run when unpickled unsafely
    marker = tmp_path / "marker"
    torch.save({"optimizer": _CreatesMarker(marker), "scheduler": genuine["scheduler"]}, checkpoint / "optimizer.pt")
    result = run_cli(*args)
    assert_one_line_error(result, str(checkpoint / "optimizer.pt"), "was not unpickled", "--restart")
    assert result.returncode == 2
    assert not marker.exists()

