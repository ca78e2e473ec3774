"""The LoRA training recipe: packed causal-LM training of one community adapter, resumable, with a manifest.

Runs as a plain process on CPU or one GPU, and unchanged under ``accelerate launch`` on several processes
(each process takes its slice of every global batch; gradients are averaged by accelerate).

Layout while training: ``<adapter_dir>.partial/checkpoint/`` (latest checkpoint: adapter weights,
optimizer, scheduler, step, config fingerprint). When training finishes, the adapter and its
``training_manifest.json`` are written under ``.partial`` and renamed into ``<adapter_dir>``, so an interrupted run
never leaves a half-written adapter where a finished one is expected. A previous adapter there is moved aside first
and removed only once the new one is in place. Training only trains: ``modplural train`` writes the model card
(``modplural.adapters.model_card``) once this returns.

Nothing modplural did not write is ever replaced or removed: before anything is loaded, ``check_output_dir``
refuses an ``<adapter_dir>`` that is a file, a link, or a directory holding anything but an adapter trained here
(its ``training_manifest.json`` and ``adapter_config.json`` beside only the files training writes), and a
``.partial`` holding anything but a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

from modplural.errors import ModPluralError
from modplural.provenance import machine, versions
from modplural.training.config import TrainConfig
from modplural.training.blocks import pack_blocks, read_passages, read_training_rows
from modplural.json_files import read_json

CHECKPOINT = "checkpoint"
MANIFEST = "training_manifest.json"
ADAPTER_FILES = frozenset({"adapter_config.json", "adapter_model.safetensors", MANIFEST, "README.md"})  # all a finished adapter holds
PARTIAL_ENTRIES = frozenset({CHECKPOINT, f".{CHECKPOINT}.tmp", f".{CHECKPOINT}.old", "adapter"})  # all a .partial directory holds


def partial_dir(adapter_dir: Path) -> Path:
    """Where an unfinished run of ``adapter_dir`` keeps its checkpoint."""
    return adapter_dir.with_name(adapter_dir.name + ".partial")


def check_output_dir(adapter_dir: Path) -> None:
    """A one-line error unless training may write ``adapter_dir`` and its ``.partial``: each missing, empty, or holding
    only what training writes (a previous adapter trained here, an interrupted run's checkpoint)."""
    _check_ours(adapter_dir, "output directory", "an adapter it trained", _foreign_adapter_entries)
    _check_ours(partial_dir(adapter_dir), "checkpoint directory", "an interrupted run's checkpoint", _foreign_partial_entries)


def _check_ours(path: Path, label: str, ours: str, foreign: Callable[[Path], list[str]]) -> None:
    """Refuse ``path`` when it is a link, a file, or a directory where ``foreign`` finds entries training did not write."""
    fix = "choose another --output-dir (or output_dir), or move {} away yourself"
    if path.is_symlink():
        raise ModPluralError(f"{label} {path} is a symbolic link, not a directory modplural may replace; {fix.format('it')}")
    if path.exists() and not path.is_dir():
        raise ModPluralError(f"{label} {path} is a file, not a directory; {fix.format('it')}")
    strangers = foreign(path) if path.is_dir() else []
    if strangers:
        shown = ", ".join(strangers[:5]) + (f" and {len(strangers) - 5} more" if len(strangers) > 5 else "")
        raise ModPluralError(f"{label} {path} is not empty and holds files modplural did not write ({shown}); modplural replaces only "
                             f"{ours} there; {fix.format('them')}")


def _foreign_adapter_entries(path: Path) -> list[str]:
    """The entries of ``path`` training did not write: all of them unless it is one of our finished adapters."""
    entries = sorted(path.iterdir())
    ours = all((path / name).is_file() and not (path / name).is_symlink() for name in (MANIFEST, "adapter_config.json"))
    return [e.name for e in entries if not (ours and e.name in ADAPTER_FILES and e.is_file() and not e.is_symlink())]


def _foreign_partial_entries(path: Path) -> list[str]:
    return [e.name for e in sorted(path.iterdir()) if e.name not in PARTIAL_ENTRIES or e.is_symlink()]


def _block_order(n_blocks: int, seed: int, start: int = 0) -> Iterator[int]:
    """An endless deterministic sequence of block indices, from position ``start`` on: one shuffled permutation per
    epoch, each made when it is reached (so any number of steps costs one epoch's memory)."""
    import torch

    epoch, offset = divmod(start, n_blocks)
    while True:
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        yield from torch.randperm(n_blocks, generator=g).tolist()[offset:]
        epoch, offset = epoch + 1, 0


def _corpus_hash(corpus: Path, train_files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in (*train_files, "valid.jsonl"):
        h.update((corpus / name).read_bytes())
    return h.hexdigest()[:16]


def _save_checkpoint(partial: Path, model, optimizer, scheduler, step: int, config: TrainConfig, losses: list[float], base_valid: float | None) -> None:
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = partial / f".{CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()}, str(tmp / "adapter.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": config.fingerprint(), "losses": losses, "valid_loss_base": base_valid}))
    final = partial / CHECKPOINT
    old = partial / f".{CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(partial: Path, model, optimizer, scheduler, config: TrainConfig) -> tuple[int, list[float], float | None]:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    checkpoint = partial / CHECKPOINT
    if not (checkpoint / "state.json").is_file():
        return 0, [], None
    try:
        state = read_json(checkpoint / "state.json", dict)
    except ModPluralError as exc:
        raise ModPluralError(f"{exc}: the checkpoint is damaged; rerun with --restart to discard it") from exc
    if state.get("fingerprint") != config.fingerprint():
        raise ModPluralError(
            f"{checkpoint} belongs to a run with another config; rerun with --restart to discard it"
        )
    if type(state.get("step")) is not int or not isinstance(state.get("losses"), list):
        raise ModPluralError(f"{checkpoint / 'state.json'}: 'step' and 'losses' are missing or of the wrong type; rerun with --restart to discard the checkpoint")
    set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter.safetensors")))
    saved = _load_optimizer_state(checkpoint / "optimizer.pt")
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return int(state["step"]), list(state["losses"]), state.get("valid_loss_base")


def _load_optimizer_state(path: Path) -> dict:
    """The optimizer and scheduler state saved with a checkpoint, unpickled with ``weights_only=True``: only
    tensors and plain data, so a tampered file cannot run code."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModPluralError(f"{path} is not plain tensors and data, so it was not unpickled (it may be corrupt or tampered with); rerun with --restart to discard the checkpoint") from exc
    except (RuntimeError, OSError, EOFError) as exc:
        raise ModPluralError(f"{path} is unreadable ({str(exc).splitlines()[0]}); rerun with --restart to discard the checkpoint") from exc


def _mean_loss(model, blocks: list[list[int]], batch_size: int, device) -> float:
    import torch

    if not blocks:
        return float("nan")
    total = 0.0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(blocks), batch_size):
            ids = torch.tensor(blocks[start : start + batch_size], device=device)
            total += float(model(input_ids=ids, labels=ids).loss) * len(ids)
    model.train()
    return total / len(blocks)


def train(config: TrainConfig, restart: bool = False, progress: bool = True, stop_after: int | None = None) -> Path:
    """Train (or resume) the adapter of ``config.community``; returns the finished adapter directory.

    ``stop_after`` ends the run after that many optimizer steps of this invocation, leaving the checkpoint
    behind as an interrupted run would (used to test resumption).
    """
    import torch
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    from modplural.models import load_model

    check_output_dir(config.adapter_dir)
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, cpu=config.device == "cpu")
    device = accelerator.device
    corpus = config.corpus_path
    train_rows = [row for name in config.train_files for row in read_training_rows(corpus / name)]
    valid_texts = read_passages(corpus / "valid.jsonl")
    loaded = load_model(config.base_model, device=device.type if device.type != "cuda" else "cuda", dtype=config.dtype)
    torch.manual_seed(config.seed)
    tokenizer = loaded.tokenizer
    train_texts = [row if isinstance(row, str) else tokenizer.apply_chat_template(row, tokenize=False) for row in train_rows]
    train_blocks = pack_blocks(train_texts, tokenizer, config.seq_len)
    valid_blocks = pack_blocks(valid_texts, tokenizer, config.seq_len)[: config.eval_blocks]
    if len(train_blocks) < config.batch_size or not valid_blocks:
        raise ModPluralError(
            f"corpus {corpus} is too small: {len(train_blocks)} training and {len(valid_blocks)} validation blocks of {config.seq_len} tokens"
        )
    lora = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(loaded.model, lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)

    partial = partial_dir(config.adapter_dir)
    if restart and accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    start_step, losses, base_valid = _load_checkpoint(partial, model, optimizer, scheduler, config)
    model, optimizer = accelerator.prepare(model, optimizer)

    world, rank = accelerator.num_processes, accelerator.process_index
    per_process = config.batch_size * config.grad_accum
    order = _block_order(len(train_blocks), config.seed, start_step * per_process * world)
    if start_step == 0:
        base_valid = _mean_loss(model, valid_blocks, config.batch_size, device)
    started = time.time()
    bar = tqdm(total=config.max_steps, initial=start_step, desc=config.community, disable=not (progress and accelerator.is_main_process), dynamic_ncols=True)
    step, tokens = start_step, 0
    for step in range(start_step, config.max_steps):
        torch.manual_seed(config.seed * 100_003 + step * world + rank)  # dropout noise depends on the step only
        mine = list(islice(order, per_process * world))[rank * per_process : (rank + 1) * per_process]
        step_loss = 0.0
        for micro in range(config.grad_accum):
            ids = torch.tensor([train_blocks[i] for i in mine[micro * config.batch_size : (micro + 1) * config.batch_size]], device=device)
            with accelerator.accumulate(model):
                loss = model(input_ids=ids, labels=ids).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            step_loss += float(loss.detach()) / config.grad_accum
        scheduler.step()
        losses.append(float(accelerator.gather(torch.tensor([step_loss], device=device)).mean()))
        tokens += per_process * world * config.seq_len
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{tokens / max(time.time() - started, 1e-9):.0f}")
        done = step + 1
        if accelerator.is_main_process and (done % config.checkpoint_every == 0 or done == config.max_steps):
            _save_checkpoint(partial, accelerator.unwrap_model(model), optimizer, scheduler, done, config, losses, base_valid)
        accelerator.wait_for_everyone()
        if stop_after is not None and done - start_step >= stop_after and done < config.max_steps:
            bar.close()
            if accelerator.is_main_process and done % config.checkpoint_every:
                _save_checkpoint(partial, accelerator.unwrap_model(model), optimizer, scheduler, done, config, losses, base_valid)
            return partial
    bar.close()
    valid_loss = _mean_loss(model, valid_blocks, config.batch_size, device)
    if accelerator.is_main_process:
        _finish(accelerator.unwrap_model(model), config, partial, {
            "config": config.as_dict(),
            "config_fingerprint": config.fingerprint(),
            "base_model_identity": loaded.identity,
            "corpus": {"path": str(corpus), "train_files": list(config.train_files), "sha256_16": _corpus_hash(corpus, config.train_files), "train_passages": len(train_texts), "train_blocks": len(train_blocks), "valid_blocks": len(valid_blocks)},
            "steps": config.max_steps,
            "resumed_from_step": start_step,
            "processes": world,
            "tokens_per_step": per_process * world * config.seq_len,
            "train_loss_last10": sum(losses[-10:]) / len(losses[-10:]),
            "train_losses": [round(x, 4) for x in losses],
            "valid_loss": valid_loss,
            "valid_loss_base": base_valid,
            "duration_s_this_run": round(time.time() - started, 1),
            "versions": versions("accelerate"),
            "machine": machine(device),
            "command": " ".join(sys.argv),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
    accelerator.wait_for_everyone()
    return config.adapter_dir


def _finish(model, config: TrainConfig, partial: Path, manifest: dict) -> None:
    """Write the adapter and its manifest under .partial, then swap them into place and drop the checkpoint."""
    staged = partial / "adapter"
    shutil.rmtree(staged, ignore_errors=True)
    model.save_pretrained(str(staged), save_embedding_layers=False)
    (staged / "README.md").unlink(missing_ok=True)
    (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    final = config.adapter_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    check_output_dir(final)  # again: something may have been put there while training ran
    _swap_in(staged, final)
    shutil.rmtree(partial, ignore_errors=True)


def _swap_in(new: Path, final: Path) -> None:
    """Rename the directory ``new`` to ``final``; a previous ``final`` is first moved into a fresh hidden directory
    beside it, put back if the swap fails, and removed only once ``new`` is in place."""
    if not final.exists():
        new.rename(final)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    final.rename(aside / final.name)
    try:
        new.rename(final)
    except OSError:
        (aside / final.name).rename(final)
        raise
    shutil.rmtree(aside)
