"""Inference-Time Intervention directions (Li et al. 2023): truthful directions in attention heads.

Recipe, as in the paper's code (``honest_llama``): record every head's output (``attn.hook_z``)
at the last token of "Q: ...\\nA: <answer>" for the correct and incorrect reference answers of
the training questions; per head, fit a logistic probe on part of the training questions and
measure its accuracy on the rest (split by question); keep the top-K heads; each head's direction
is the mass-mean shift (mean over true answers minus mean over false ones, over all training
questions) or, optionally, the probe's weight vector; keep the std of the activations projected
on it, so magnitudes can be given in std units (the paper's alpha).

Everything here fits on arrays; ``fit_iti_for_questions`` runs the model to get them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evals.truthfulqa import split_questions
from harness.config import ConfigError
from harness.directions import Direction
from harness.directions.contrast import collect_last_token, contrast_set, head_hooks, stack_heads
from harness.directions.store import DirectionSet

METHODS = ("mass_mean", "probe")
MAX_DEFAULT_HEADS = 48


def default_top_k(n_layers: int, n_heads: int) -> int:
    """round(0.1 * n_layers * n_heads), at least 1 and at most 48."""
    return max(1, min(MAX_DEFAULT_HEADS, round(0.1 * n_layers * n_heads)))


@dataclass(frozen=True)
class ITIConfig:
    """How ITI directions are fitted. ``top_k=None`` means :func:`default_top_k`;
    ``layers`` restricts the candidate heads to those layers (None: all layers)."""

    top_k: int | None = None
    method: str = "mass_mean"
    val_fraction: float = 0.2
    seed: int = 0
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"iti top_k={self.top_k} must be a positive integer")
        if self.method not in METHODS:
            raise ConfigError(f"iti method {self.method!r} is unknown (choose {', '.join(METHODS)})")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"iti val_fraction={self.val_fraction} must be in (0, 1)")
        if self.layers is not None and (not self.layers or any(
                not isinstance(x, int) or x < 0 for x in self.layers)):
            raise ConfigError(f"iti layers={list(self.layers)} must be non-negative layer indices")


@dataclass(frozen=True)
class ITIFit:
    """The outcome of a fit: per-head held-out probe accuracy and the chosen heads' directions."""

    accuracy: np.ndarray                 # [n_layers, n_heads]; NaN for heads not considered
    heads: tuple[tuple[int, int], ...]   # chosen (layer, head), best first
    vectors: np.ndarray                  # [K, d_head], unit norm
    stds: np.ndarray                     # [K], std of training activations along each vector
    train_question_ids: tuple[int, ...]
    val_question_ids: tuple[int, ...]


def fit_logistic(x: torch.Tensor, y: torch.Tensor, c: float = 1.0, max_iter: int = 100,
                 tol: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularised logistic regression for many problems at once, by Newton's method.

    ``x`` [m, n, d] (m problems sharing 0/1 labels ``y`` [n]) -> (weights [m, d], bias [m]).
    The objective is scikit-learn's default (``LogisticRegression(C=c)``, lbfgs):
    0.5 |w|^2 + c * sum_i logloss(y_i, x_i w + b), bias unpenalised; strictly convex, so the
    optimum is the same, reached in a few batched Newton steps instead of m separate fits.
    """
    x = x.to(torch.float64)
    m, n, d = x.shape
    xa = torch.cat([x, torch.ones(m, n, 1, dtype=x.dtype)], dim=2)       # [m, n, d+1]
    yy = y.to(torch.float64)
    theta = torch.zeros(m, d + 1, dtype=x.dtype)
    reg = torch.ones(d + 1, dtype=x.dtype)
    reg[-1] = 0.0

    def loss(t: torch.Tensor) -> torch.Tensor:
        z = torch.einsum("mnd,md->mn", xa, t)
        return 0.5 * (t[:, :-1] ** 2).sum(1) + c * (torch.nn.functional.softplus(z) - yy * z).sum(1)

    current = loss(theta)
    for _ in range(max_iter):
        p = torch.sigmoid(torch.einsum("mnd,md->mn", xa, theta))
        grad = reg * theta + c * torch.einsum("mnd,mn->md", xa, p - yy)
        hess = c * torch.einsum("mnd,mn,mne->mde", xa, p * (1 - p), xa) + torch.diag_embed(
            reg.expand(m, -1)) + 1e-10 * torch.eye(d + 1, dtype=x.dtype)
        step = torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
        size = torch.ones(m, 1, dtype=x.dtype)
        for _ in range(30):  # backtracking, per problem
            trial = loss(theta - size * step)
            worse = trial > current + 1e-12 * current.abs()
            if not worse.any():
                break
            size = torch.where(worse[:, None], size / 2, size)
        new = loss(theta - size * step)
        theta = torch.where((new <= current)[:, None], theta - size * step, theta)
        done = (current - new).abs().max() <= tol * max(1.0, float(current.abs().max()))
        current = torch.minimum(new, current)
        if done:
            break
    return theta[:, :-1], theta[:, -1]


def probe_accuracies(x_train: torch.Tensor, y_train: np.ndarray, x_val: torch.Tensor,
                     y_val: np.ndarray, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Held-out accuracy [m] and weights [m, d] of a logistic probe per problem ([m, n, d])."""
    accs, coefs = [], []
    ytr, yva = torch.as_tensor(y_train), torch.as_tensor(y_val)
    for start in range(0, x_train.shape[0], chunk):
        w, b = fit_logistic(x_train[start:start + chunk], ytr)
        z = torch.einsum("mnd,md->mn", x_val[start:start + chunk].to(torch.float64), w) + b[:, None]
        accs.append(((z > 0).long() == yva).double().mean(1))
        coefs.append(w)
    return torch.cat(accs).numpy(), torch.cat(coefs).numpy()


def mass_mean_direction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """mean(x | y=1) - mean(x | y=0)."""
    return x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0)


def fit_iti(acts: np.ndarray | torch.Tensor, labels: np.ndarray, question_ids: np.ndarray,
            cfg: ITIConfig = ITIConfig()) -> ITIFit:
    """Fit ITI on head activations ``acts`` [n, n_layers, n_heads, d_head] of labelled texts.

    All texts passed are training texts; the probe-validation split is taken among their
    questions, so the caller's held-out fold is never touched.
    """
    x = acts.numpy() if isinstance(acts, torch.Tensor) else np.asarray(acts)
    x = x.astype(np.float64)
    y, qids = np.asarray(labels), np.asarray(question_ids)
    if x.ndim != 4 or len(x) != len(y) or len(y) != len(qids):
        raise ValueError(f"acts must be [n, layers, heads, d_head] with n = len(labels); got "
                         f"{x.shape}, {len(y)} labels, {len(qids)} question ids")
    if set(np.unique(y)) != {0, 1}:
        raise ConfigError("ITI needs both correct and incorrect answers among training texts")
    n_layers, n_heads = x.shape[1], x.shape[2]
    layers = range(n_layers) if cfg.layers is None else cfg.layers
    bad = [layer for layer in layers if layer >= n_layers]
    if bad:
        raise ConfigError(f"iti layers {bad} do not exist (the model has {n_layers} layers)")
    candidates = [(layer, h) for layer in sorted(set(layers)) for h in range(n_heads)]
    k = cfg.top_k or default_top_k(n_layers, n_heads)
    if k > len(candidates):
        raise ConfigError(f"iti top_k={k} exceeds the {len(candidates)} candidate heads")
    if len(set(int(q) for q in qids)) < 2:
        raise ConfigError(f"ITI needs at least 2 training questions (got {len(set(qids))})")
    train_q, val_q = split_questions(qids, cfg.val_fraction, cfg.seed)
    tr, va = np.isin(qids, train_q), np.isin(qids, val_q)
    if len(np.unique(y[tr])) < 2:
        raise ConfigError("ITI probe-training split lacks correct or incorrect answers; "
                          "use more questions")
    accuracy = np.full((n_layers, n_heads), np.nan)
    per_head = torch.from_numpy(np.stack([x[:, layer, h] for layer, h in candidates]))  # [m, n, d]
    acc, coef = probe_accuracies(per_head[:, tr], y[tr], per_head[:, va], y[va])
    coefs = {}
    for i, (layer, h) in enumerate(candidates):
        accuracy[layer, h] = acc[i]
        coefs[(layer, h)] = coef[i]
    heads = tuple(sorted(candidates, key=lambda lh: (-accuracy[lh], lh))[:k])
    vectors, stds = [], []
    for layer, h in heads:
        v = mass_mean_direction(x[:, layer, h], y) if cfg.method == "mass_mean" \
            else coefs[(layer, h)]
        norm = np.linalg.norm(v)
        if not np.isfinite(norm) or norm == 0:
            raise ConfigError(f"ITI direction for layer {layer} head {h} is zero")
        v = v / norm
        vectors.append(v)
        stds.append(float(np.std(x[:, layer, h] @ v)))
    return ITIFit(accuracy, heads, np.stack(vectors), np.asarray(stds),
                  tuple(sorted(int(q) for q in set(qids.tolist()))), tuple(val_q))


def iti_direction_set(fit: ITIFit, cfg: ITIConfig, info: dict | None = None,
                      label: str = "iti") -> DirectionSet:
    """The fit as a saveable set of per-head directions at ``blocks.L.attn.hook_z``."""
    directions = tuple(
        Direction(f"blocks.{layer}.attn.hook_z", torch.tensor(v, dtype=torch.float32), head,
                  float(std), f"{label}:L{layer}H{head}")
        for (layer, head), v, std in zip(fit.heads, fit.vectors, fit.stds))
    meta = {"config": {**cfg.__dict__, "layers": list(cfg.layers) if cfg.layers else None},
            "heads": [list(h) for h in fit.heads],
            "head_accuracy": [float(fit.accuracy[h]) for h in fit.heads],
            "val_question_ids": list(fit.val_question_ids), **(info or {})}
    return DirectionSet("iti", directions, fit.train_question_ids, meta,
                        {"probe_accuracy": torch.tensor(fit.accuracy, dtype=torch.float32)})


def record_heads(model, contrast, batch_size: int = 32, progress: bool = True) -> torch.Tensor:
    """[n, n_layers, n_heads, d_head] last-token head outputs of a contrast set."""
    acts = collect_last_token(model, contrast.token_ids, head_hooks(model.n_layers), batch_size,
                              progress=progress)
    return stack_heads(acts, model.n_layers)


def fit_iti_for_questions(model, questions, cfg: ITIConfig = ITIConfig(), batch_size: int = 32,
                          progress: bool = True) -> DirectionSet:
    """Record head activations on ``questions``' reference answers and fit ITI on all of them."""
    contrast = contrast_set(questions, model.tokenizer)
    acts = record_heads(model, contrast, batch_size, progress)
    fit = fit_iti(acts, contrast.labels, contrast.question_ids, cfg)
    return iti_direction_set(fit, cfg, {"model": model.fingerprint()})
