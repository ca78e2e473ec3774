"""The LoRA training config: one YAML file per community, usually extending a shared recipe file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import string
import sys
from dataclasses import dataclass
from pathlib import Path

from modplural.config_files import from_mapping, read_yaml
from modplural.data_paths import REPO_ROOT
from modplural.errors import ModPluralError

CONFIG_DIR = REPO_ROOT / "training" / "configs"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained adapter (paths relative to the repository root)."""

    community: str
    base_model: str = "default"
    corpus_dir: str = "build/corpora"
    train_files: tuple[str, ...] = ("train.jsonl",)  # in the community's corpus folder; rows are text or conversations
    output_dir: str = "community_models/SmolLM2-135M-Instruct/{community}"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_steps: int = 120
    seq_len: int = 128
    batch_size: int = 4
    grad_accum: int = 1
    seed: int = 0
    checkpoint_every: int = 20
    eval_blocks: int = 64
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        positive = ["r", "alpha", "max_steps", "seq_len", "batch_size", "grad_accum", "checkpoint_every", "eval_blocks"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ModPluralError(f"field {name!r} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ModPluralError(f"field 'dropout' must be in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0:
            raise ModPluralError(f"field 'learning_rate' must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0 or self.warmup_steps >= self.max_steps:
            raise ModPluralError(f"field 'warmup_steps' must be in [0, max_steps), got {self.warmup_steps}")
        if not self.target_modules:
            raise ModPluralError("field 'target_modules' is empty")
        if not self.train_files or any(f in ("", ".", "..") or Path(f).name != f for f in self.train_files):
            raise ModPluralError(f"field 'train_files' must list file names in the corpus folder, got {list(self.train_files)}")
        if not _only_community_placeholder(self.output_dir):
            raise ModPluralError(f"field 'output_dir' {self.output_dir!r} has a placeholder other than {{community}} (write literal braces as {{{{ and }}}})")

    @property
    def adapter_dir(self) -> Path:
        return _repo_path(self.output_dir.format(community=self.community))

    @property
    def corpus_path(self) -> Path:
        return _repo_path(self.corpus_dir) / self.community

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def fingerprint(self) -> str:
        """Hash of the fields that change what is trained (not where it is written)."""
        keys = {k: v for k, v in self.as_dict().items() if k not in ("output_dir", "corpus_dir", "device", "checkpoint_every")}
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def _only_community_placeholder(template: str) -> bool:
    """Whether ``template``'s only ``{...}`` field is a plain ``{community}`` (``{{``/``}}`` are literal braces)."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template) if name is not None]
    except ValueError:  # a lone { or }
        return False
    return all(field == ("community", "", None) for field in fields)


def _repo_path(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def load_train_config(path: Path, **overrides) -> TrainConfig:
    """Read a training config file (with ``extends``) and apply command-line overrides.

    A ``max_steps`` override at or below the file's ``warmup_steps`` lowers the warm-up to ``max_steps - 1``
    (with a one-line notice on stderr), so a short trial run works with the shipped recipe.
    """
    data = read_yaml(path)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    data.update(overrides)
    steps, warmup = data.get("max_steps"), data.get("warmup_steps", TrainConfig.warmup_steps)
    if "max_steps" in overrides and "warmup_steps" not in overrides and _ints(steps, warmup) and 1 <= steps <= warmup:
        data["warmup_steps"] = steps - 1
        print(f"modplural: note: {path}: warmup_steps {warmup} lowered to {steps - 1} for max_steps {steps}", file=sys.stderr)
    return from_mapping(TrainConfig, data, str(path))


def _ints(*values) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def community_config_path(community: str, config_dir: Path = CONFIG_DIR) -> Path:
    path = config_dir / f"{community}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in config_dir.glob("*.yaml") if not p.stem.startswith("_"))
        raise ModPluralError(f"unknown community {community!r}: no training config {path} (known: {', '.join(known)})")
    return path


def all_community_configs(config_dir: Path = CONFIG_DIR) -> list[Path]:
    return sorted(p for p in config_dir.glob("*.yaml") if not p.stem.startswith("_"))
