"""Mean-difference ("CAA"-style) directions: mean activation on correct answers minus incorrect.

At each hook (usually ``blocks.L.hook_resid_post``), the activation at the last token of
"Q: ...\\nA: <answer>" is averaged over the correct and over the incorrect reference answers of
the training questions; the direction is the unit-normalised difference, and the std of the
training activations projected on it is kept for ``scale = "std"``. Several hooks come from one
forward pass per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from harness.config import ConfigError
from harness.directions import Direction
from harness.directions.contrast import collect_last_token, contrast_set
from harness.directions.store import DirectionSet
from harness.steering import resolve_hook


def fit_meandiff(acts: np.ndarray | torch.Tensor, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit direction, std of the projections) for ``acts`` [n, d] with 0/1 ``labels``."""
    x = (acts.numpy() if isinstance(acts, torch.Tensor) else np.asarray(acts)).astype(np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"acts must be [n, d] with n = len(labels); got {x.shape}, {len(y)}")
    if not (y == 1).any() or not (y == 0).any():
        raise ConfigError("mean-difference needs both correct and incorrect answers")
    v = x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0)
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm == 0:
        raise ConfigError("mean-difference direction is zero (true and false means coincide)")
    v = v / norm
    return v, float(np.std(x @ v))


def meandiff_direction_set(acts: dict[str, torch.Tensor], labels: np.ndarray,
                           question_ids: Sequence[int], info: dict | None = None,
                           label: str = "meandiff") -> DirectionSet:
    """One direction per hook in ``acts`` ({hook: [n, d]}), fitted on all rows."""
    dirs = []
    for hook, x in acts.items():
        if x.ndim != 2:
            raise ConfigError(f"meandiff at {hook}: needs a [n, d] activation (per-head hooks "
                              "are for ITI)")
        v, std = fit_meandiff(x, labels)
        dirs.append(Direction(hook, torch.tensor(v, dtype=torch.float32), None, std,
                              f"{label}:{hook}"))
    qids = tuple(sorted({int(q) for q in question_ids}))
    return DirectionSet("meandiff", tuple(dirs), qids, dict(info or {}))


def fit_meandiff_for_questions(model, questions, hook_names: Sequence[str], batch_size: int = 32,
                               progress: bool = True) -> DirectionSet:
    """Record ``hook_names`` on ``questions``' reference answers and fit one direction per hook."""
    for h in hook_names:
        if resolve_hook(model, h).kind == "attn.hook_z":
            raise ConfigError(f"meandiff hook {h}: per-head hooks are for ITI; use a residual, "
                              "attention-output or MLP-output hook")
    contrast = contrast_set(questions, model.tokenizer)
    acts = collect_last_token(model, contrast.token_ids, hook_names, batch_size,
                              progress=progress)
    return meandiff_direction_set(acts, contrast.labels, contrast.question_ids,
                                  {"model": model.fingerprint()})
