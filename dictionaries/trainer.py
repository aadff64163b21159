"""Train one or several dictionaries from one stream of activation batches.

:class:`DictionaryTrainer` is a dictionary_learning-style trainer with ``update(step, acts)``;
:func:`train` feeds every trainer the same batches from a plain iterator of [batch, d_in]
tensors (no language model needed), logs to ``log.jsonl`` beside each dictionary, and returns
the trained dictionaries in true activation units.

Log rows (every ``log_every`` steps, on the current training batch, in scaled units):
``sq_error`` (||x - x^||^2 per token), ``fvu`` (sq_error over the batch's variance per token),
``sparsity_loss``, ``aux_loss``, ``loss``, ``l0``, ``dead_fraction`` (not fired for
``dead_after_tokens``), ``lr``, ``l1_coefficient``, ``resampled``, ``step``, ``tokens``,
``elapsed_s``.

Input scaling: the first batches fix one scalar ``scale = sqrt(d_in) / mean ||x||`` and every
batch is multiplied by it, so default hyper-parameters (L1 coefficient, learning rate) work
across models and layers. After training the scale is folded into the weights and recorded.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dictionaries.config import DictionaryConfig, DictionaryConfigError, TrainConfig
from dictionaries.saes import Dictionary
from dictionaries.steps import compute_grads, remove_parallel_grad
from evals.io import progress as progress_bar

SCALE_SAMPLE_TOKENS = 16_384
THRESHOLD_EMA = 0.01


def estimate_scale(sample: torch.Tensor) -> float:
    """The factor that gives ``sample`` [n, d_in] an average row norm of ``sqrt(d_in)``."""
    mean_norm = float(sample.float().norm(dim=1).mean())
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise DictionaryConfigError("activations have zero or non-finite norm; cannot scale them")
    return math.sqrt(sample.shape[1]) / mean_norm


class DictionaryTrainer:
    """Adam on one dictionary with LR warm-up/decay, L1 warm-up and dead-feature handling."""

    def __init__(self, cfg: DictionaryConfig, train_cfg: TrainConfig,
                 device: torch.device | str = "cpu") -> None:
        if cfg.architecture not in ("relu", "topk", "batchtopk"):
            raise DictionaryConfigError(f"cannot train architecture {cfg.architecture!r}: "
                                        "JumpReLU is for loading published dictionaries only "
                                        "(train relu, topk or batchtopk; batchtopk is saved as "
                                        "jumprelu with its threshold)")
        self.cfg, self.train_cfg = cfg, train_cfg
        self.sae = Dictionary(cfg, device=device)
        params = [self.sae.W_enc, self.sae.b_enc, self.sae.W_dec, self.sae.b_dec]
        self.base_lr = train_cfg.lr_for(cfg.d_in)
        self.optimizer = torch.optim.Adam(params, lr=self.base_lr, betas=train_cfg.adam_betas)
        self.tokens_since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)
        self.threshold_seen = False
        self.n_resampled = 0

    @torch.no_grad()
    def initialize(self, sample: torch.Tensor) -> None:
        """Start ``b_dec`` at the mean of a (scaled) sample of activations."""
        self.sae.b_dec.copy_(sample.mean(dim=0))

    def lr_at(self, step: int) -> float:
        t = self.train_cfg
        n_steps = t.n_steps
        factor = min(1.0, (step + 1) / t.lr_warmup_steps) if t.lr_warmup_steps else 1.0
        decay_start = n_steps * (1 - t.lr_decay_fraction)
        if t.lr_decay_fraction > 0 and step >= decay_start:
            factor *= max(0.0, (n_steps - step) / (n_steps - decay_start))
        return self.base_lr * factor

    def l1_at(self, step: int) -> float:
        warm = self.train_cfg.l1_warmup_fraction * self.train_cfg.n_steps
        return self.cfg.l1_coefficient * (min(1.0, (step + 1) / warm) if warm >= 1 else 1.0)

    def dead_mask(self) -> torch.Tensor:
        return self.tokens_since_fired >= self.train_cfg.dead_after_tokens

    def update(self, step: int, acts: torch.Tensor) -> dict[str, float]:
        """One optimisation step on ``acts`` [batch, d_in] (already scaled); returns losses."""
        sae = self.sae
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        l1 = self.l1_at(step)
        dead = self.dead_mask() if self.cfg.architecture != "relu" else None
        result = compute_grads(sae, acts, l1, dead)
        remove_parallel_grad(sae)
        self.optimizer.step()
        sae.normalize_decoder()
        with torch.no_grad():
            self.tokens_since_fired += acts.shape[0]
            self.tokens_since_fired[result.fired] = 0
            if result.min_positive is not None and sae.threshold is not None:
                if not self.threshold_seen:
                    sae.threshold.fill_(result.min_positive)
                    self.threshold_seen = True
                else:
                    sae.threshold.mul_(1 - THRESHOLD_EMA).add_(THRESHOLD_EMA * result.min_positive)
        resampled = 0
        t = self.train_cfg
        if (self.cfg.architecture == "relu" and step > 0 and step % t.resample_every == 0
                and step < t.resample_until * t.n_steps):
            resampled = self.resample(acts, result.per_token_error)
        sparsity_loss = result.sparsity * l1
        with torch.no_grad():
            variance = float((acts - acts.mean(dim=0)).pow(2).sum()) / acts.shape[0]
        return {"loss": result.mse + sparsity_loss + result.aux, "sq_error": result.mse,
                "fvu": result.mse / variance if variance > 0 else float("nan"),
                "sparsity_loss": sparsity_loss, "aux_loss": result.aux, "l0": result.l0,
                "lr": lr, "l1_coefficient": l1, "resampled": resampled}

    @torch.no_grad()
    def resample(self, acts: torch.Tensor, per_token_error: torch.Tensor) -> int:
        """Point dead features at badly reconstructed inputs (chosen with p ~ error^2).

        The new decoder row is the unit direction of ``x - b_dec``; the encoder column is the
        same direction scaled to 0.2x the mean norm of live encoder columns; ``b_enc`` = 0 and
        the features' Adam state is reset.
        """
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        sae = self.sae
        weights = per_token_error.pow(2)
        if float(weights.sum()) <= 0:
            return 0
        gen = torch.Generator(device=acts.device).manual_seed(self.cfg.seed + 7919 * n_dead)
        rows = torch.multinomial(weights, n_dead, replacement=n_dead > acts.shape[0],
                                 generator=gen)
        dirs = acts[rows] - sae.b_dec
        dirs /= dirs.norm(dim=1, keepdim=True).clamp_min(1e-12)
        alive = ~dead
        enc_norm = float(sae.W_enc[:, alive].norm(dim=0).mean()) if bool(alive.any()) else 1.0
        idx = dead.nonzero().squeeze(1)
        sae.W_dec[idx] = dirs
        sae.W_enc[:, idx] = dirs.T * (0.2 * enc_norm)
        sae.b_enc[idx] = 0.0
        for param, sl in ((sae.W_dec, (idx,)), (sae.W_enc, (slice(None), idx)),
                          (sae.b_enc, (idx,))):
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][sl] = 0.0
        self.tokens_since_fired[idx] = 0
        self.n_resampled += n_dead
        return n_dead


@dataclass
class TrainedDictionary:
    """A trained dictionary (true units), its training summary and where it was logged."""

    sae: Dictionary
    train_cfg: TrainConfig
    activation_scale: float
    summary: dict[str, Any] = field(default_factory=dict)


def _peek(batches: Iterator[torch.Tensor], n_tokens: int) -> tuple[list[torch.Tensor],
                                                                   Iterator[torch.Tensor]]:
    """Take batches until ``n_tokens`` rows are seen; return them and the re-chained stream."""
    head: list[torch.Tensor] = []
    seen = 0
    for batch in batches:
        head.append(batch)
        seen += batch.shape[0]
        if seen >= n_tokens:
            break
    return head, itertools.chain(head, batches)


def train(cfgs: list[DictionaryConfig], batches: Iterable[torch.Tensor], train_cfg: TrainConfig,
          *, log_paths: list[Path | None] | None = None, progress: bool = True,
          on_log: Callable[[int, list[dict[str, float]]], None] | None = None
          ) -> list[TrainedDictionary]:
    """Train one dictionary per config on the same stream of [batch, d_in] activations.

    Stops after ``train_cfg.n_steps`` batches or when the stream ends. Each entry of
    ``log_paths`` (a ``.jsonl`` file or None) receives a JSON row every ``log_every`` steps.
    """
    if not cfgs:
        raise DictionaryConfigError("no dictionaries to train (give at least one expansion)")
    d_in = cfgs[0].d_in
    if any(c.d_in != d_in for c in cfgs):
        raise DictionaryConfigError("all dictionaries trained from one stream need the same d_in")
    device = torch.device(train_cfg.device)
    head, stream = _peek(iter(batches), SCALE_SAMPLE_TOKENS)
    if not head:
        raise DictionaryConfigError("the activation stream is empty")
    sample = torch.cat(head).to(device, torch.float32)
    if sample.shape[1] != d_in:
        raise DictionaryConfigError(f"activations have width {sample.shape[1]}, "
                                    f"but the dictionaries expect d_in={d_in}")
    scale = estimate_scale(sample)
    trainers = [DictionaryTrainer(c, train_cfg, device) for c in cfgs]
    for trainer in trainers:
        trainer.initialize(sample * scale)
    logs = [open(p, "a") if p else None  # noqa: SIM115 - closed in the finally below
            for p in (log_paths or [None] * len(cfgs))]
    start = time.perf_counter()
    tokens = 0
    step = 0
    bar = progress_bar(total=train_cfg.n_steps, desc="training dictionaries", unit="step",
                       disable=not progress)
    try:
        for step, batch in enumerate(itertools.islice(stream, train_cfg.n_steps)):
            x = batch.to(device, torch.float32, non_blocking=True).mul_(scale)
            rows = [trainer.update(step, x) for trainer in trainers]
            tokens += x.shape[0]
            bar.update(1)
            if step % train_cfg.log_every == 0 or step == train_cfg.n_steps - 1:
                elapsed = time.perf_counter() - start
                for trainer, row, log in zip(trainers, rows, logs):
                    row.update(step=step, tokens=tokens, elapsed_s=round(elapsed, 3),
                               dead_fraction=float(trainer.dead_mask().float().mean()))
                    if log:
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                bar.set_postfix(fvu=f"{rows[0]['fvu']:.3g}", l0=f"{rows[0]['l0']:.1f}")
                if on_log:
                    on_log(step, rows)
    finally:
        bar.close()
        for log in logs:
            if log:
                log.close()
    elapsed = time.perf_counter() - start
    out = []
    for trainer in trainers:
        summary = {"steps": step + 1, "tokens": tokens, "seconds": round(elapsed, 2),
                   "tokens_per_second": round(tokens / max(elapsed, 1e-9), 1),
                   "activation_scale": scale, "n_resampled": trainer.n_resampled,
                   "dead_fraction_train": float(trainer.dead_mask().float().mean())}
        trainer.sae.fold_activation_scale(scale)
        out.append(TrainedDictionary(trainer.sae, train_cfg, scale, summary))
    return out
