"""Side effects of steering: next-token cross-entropy and KL from the unsteered model.

Measured on a fixed reference text set (by default ``evals/reference_text.txt``: a few dozen
neutral, hand-written sentences, one per line, unrelated to TruthfulQA). Each sentence is one
sequence; every next-token prediction after the first token counts. The steering vector is added
at every position of the text (``positions="all"``, whatever the generation setting), so these
numbers are the worst case for a given direction and magnitude.

    CE = mean over predicted tokens of -log p_steered(token)
    KL = mean over predicted tokens of KL(p_unsteered || p_steered)   (nats)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from evals.io import package_file
from harness.config import ConfigError
from harness.kvcache import pad_left
from harness.steering import Intervention, hooks

REFERENCE_FILE = "reference_text.txt"  # shipped in the evals package


def next_token_ce(logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy: ``-logprobs[i, targets[i]]`` for logprobs [n, V]."""
    return -logprobs.gather(-1, targets[:, None]).squeeze(-1)


def kl_divergence(base_logprobs: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """Per-position KL(base || other) for log-probabilities [n, V] (nats)."""
    return (base_logprobs.exp() * (base_logprobs - logprobs)).sum(-1)


def load_reference_text(path: str | Path | None = None) -> list[str]:
    """Non-empty lines of the reference text file (default: the packaged one)."""
    p = Path(path) if path else package_file(REFERENCE_FILE)
    if not p.is_file():
        raise ConfigError(f"reference text {p}: no such file (one sentence per line)")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ConfigError(f"reference text {p}: the file has no text")
    return lines


@dataclass
class ReferenceSet:
    """Tokenized reference sentences in fixed batches, with the unsteered log-probabilities."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]   # (input_ids, attention_mask), left-padded
    base: list[torch.Tensor]                           # per batch: [n_predicted, V]
    base_ce: float


def _predicted(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs [n, V], targets [n]) at every position whose next token is a real token."""
    keep = (mask[:, :-1] * mask[:, 1:]).bool()
    return torch.log_softmax(logits[:, :-1].float(), -1)[keep], ids[:, 1:][keep]


@torch.inference_mode()
def _forward(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model.hf_model(input_ids=ids, attention_mask=mask, use_cache=False,
                          position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits


def reference_set(model, texts: Sequence[str], batch_size: int = 16) -> ReferenceSet:
    """Tokenize ``texts`` and compute the unsteered model's log-probabilities once."""
    tok = model.tokenizer
    ids = [tok(t, add_special_tokens=True)["input_ids"] for t in texts]
    ids = [i for i in ids if len(i) >= 2]
    if not ids:
        raise ConfigError("reference text: every line is shorter than two tokens")
    batches, base, ce = [], [], []
    for start in range(0, len(ids), batch_size):
        b = pad_left(ids[start:start + batch_size], tok.pad_token_id, model.device)
        logp, targets = _predicted(_forward(model, *b), *b)
        batches.append(b)
        base.append(logp)
        ce.append(next_token_ce(logp, targets))
    return ReferenceSet(batches, base, float(torch.cat(ce).mean()))


def side_effects(model, ref: ReferenceSet, interventions: Sequence[Intervention] = ()
                 ) -> dict[str, float]:
    """{"ce", "kl", "ce_increase"} of the steered model on the reference set."""
    ivs = [dataclasses.replace(iv, positions="all") for iv in interventions]
    ce, kl = [], []
    with hooks(model, ivs) as state:
        for (ids, mask), base in zip(ref.batches, ref.base):
            state.reset()
            logp, targets = _predicted(_forward(model, ids, mask), ids, mask)
            ce.append(next_token_ce(logp, targets))
            kl.append(kl_divergence(base, logp))
    ce_mean = float(torch.cat(ce).mean())
    return {"ce": ce_mean, "kl": float(torch.cat(kl).mean().clamp(min=0.0)),
            "ce_increase": ce_mean - ref.base_ce}
