"""Fitting the learned judge: question-grouped cross-validated logistic regressions (arrays in,
arrays out; no I/O).

Each feature block (reference similarities; probe activations) gets its own standardised L2
logistic regression whose strength ``C`` is chosen by GroupKFold over questions (log loss);
a small combiner regression then weighs the blocks' out-of-fold logits. The models are kept as
plain arrays (:class:`LinearModel`) so they save as safetensors and predict without sklearn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from evals.agreement import agreement


@dataclass(frozen=True)
class LinearModel:
    """logit(x) = ((x - mean) / scale) @ coef + intercept."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef \
            + self.intercept

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.mean": self.mean.astype(np.float32),
                f"{prefix}.scale": self.scale.astype(np.float32),
                f"{prefix}.coef": self.coef.astype(np.float32),
                f"{prefix}.intercept": np.array([self.intercept], dtype=np.float32)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> LinearModel:
        get = lambda k: np.asarray(arrays[f"{prefix}.{k}"], dtype=np.float64)
        return cls(get("mean"), get("scale"), get("coef"), float(get("intercept")[0]))


@dataclass(frozen=True)
class PolyExpansion:
    """Degree-2 expansion: x plus every product z_i z_j (i <= j) of the standardised z.

    Lets a linear model use interactions of the few reference features (e.g. "similar to a
    true reference" only counts when the answer is not also similar to a false one).
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> PolyExpansion:
        x = np.asarray(x, dtype=np.float64)
        scale = x.std(0)
        scale[scale < 1e-8] = 1.0
        return cls(x.mean(0), scale)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        z = (x - self.mean) / self.scale
        i, j = np.triu_indices(x.shape[1])
        return np.concatenate([x, z[:, i] * z[:, j]], axis=1)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.mean": self.mean.astype(np.float32),
                f"{prefix}.scale": self.scale.astype(np.float32)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> PolyExpansion:
        return cls(np.asarray(arrays[f"{prefix}.mean"], dtype=np.float64),
                   np.asarray(arrays[f"{prefix}.scale"], dtype=np.float64))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit_linear(x: np.ndarray, y: np.ndarray, c: float,
               sample_weight: np.ndarray | None = None) -> LinearModel:
    """Standardise, then L2 logistic regression (lbfgs) with inverse strength ``c``."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-8] = 1.0
    lr = LogisticRegression(C=c, max_iter=2000, tol=1e-5)
    lr.fit((x - mean) / scale, y, sample_weight=sample_weight)
    return LinearModel(mean, scale, lr.coef_[0].copy(), float(lr.intercept_[0]))


def group_folds(groups: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """Test-row indices of ``k`` folds that never split a group (questions shuffled by seed)."""
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    fold_of = {g: i % k for i, g in enumerate(uniq)}
    assign = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(assign == f) for f in range(k)]


def _log_loss(y: np.ndarray, z: np.ndarray) -> float:
    p = np.clip(sigmoid(z), 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


@dataclass(frozen=True)
class BlockFit:
    model: LinearModel
    c: float
    oof_logit: np.ndarray
    cv_log_loss: dict[float, float]


def fit_block(x: np.ndarray, y: np.ndarray, folds: Sequence[np.ndarray], c_grid: Sequence[float],
              sample_weight: np.ndarray | None = None,
              tick: Callable[[], None] | None = None) -> BlockFit:
    """Choose C by grouped CV log loss, keep that C's out-of-fold logits, refit on all rows."""
    n = len(y)
    losses: dict[float, float] = {}
    oof_by_c: dict[float, np.ndarray] = {}
    for c in c_grid:
        oof = np.zeros(n)
        for test in folds:
            train = np.setdiff1d(np.arange(n), test)
            w = None if sample_weight is None else sample_weight[train]
            oof[test] = fit_linear(x[train], y[train], c, w).logit(x[test])
            if tick:
                tick()
        losses[c] = _log_loss(y, oof)
        oof_by_c[c] = oof
    best = min(c_grid, key=lambda c: (losses[c], -c))
    model = fit_linear(x, y, best, sample_weight)
    if tick:
        tick()
    return BlockFit(model, best, oof_by_c[best], losses)


COMBINER_C = 100.0


def fit_combiner(block_logits: np.ndarray, y: np.ndarray, folds: Sequence[np.ndarray],
                 sample_weight: np.ndarray | None = None) -> tuple[LinearModel, np.ndarray]:
    """A weighting of the blocks' out-of-fold logits [n, blocks], and its own CV logits.

    The combiner's CV logits come from combiners fit on the other folds' rows, so the reported
    agreement of the whole judge is out-of-fold at both levels.
    """
    n = len(y)
    oof = np.zeros(n)
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        w = None if sample_weight is None else sample_weight[train]
        oof[test] = _fit_unscaled(block_logits[train], y[train], w).logit(block_logits[test])
    return _fit_unscaled(block_logits, y, sample_weight), oof


def _fit_unscaled(z: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> LinearModel:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=COMBINER_C, max_iter=1000).fit(z, y, sample_weight=w)
    d = z.shape[1]
    return LinearModel(np.zeros(d), np.ones(d), lr.coef_[0].copy(), float(lr.intercept_[0]))


def agreement_report(p_yes: np.ndarray, y: np.ndarray, is_reference: np.ndarray,
                     is_steered: np.ndarray | None = None,
                     is_longform: np.ndarray | None = None) -> dict:
    """Agreement (threshold 0.5) on all rows, model-written rows and reference rows of
    TruthfulQA's labels, and on the steered and long-form development sets' rows ("steered",
    "longform") when given."""
    out = {}
    human = np.ones(len(y), dtype=bool)
    for mask in (is_steered, is_longform):
        if mask is not None:
            human &= ~mask
    subsets = [("all", human), ("model_written", human & ~is_reference),
               ("reference", human & is_reference)]
    if is_steered is not None:
        subsets.append(("steered", is_steered))
    if is_longform is not None and is_longform.any():
        subsets.append(("longform", is_longform))
    for name, mask in subsets:
        if mask.any():
            p = p_yes[mask]
            out[name] = agreement(list(p >= 0.5), list(y[mask].astype(bool)),
                                  list(p)).to_dict()
    return out
