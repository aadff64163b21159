"""Frozen, validated configs for a dictionary (sparse autoencoder) and its training run.

Defaults are meant to work across models and layers without tuning, because the trainer
scales every input so that its average norm is ``sqrt(d_in)`` (see ``trainer.py``); the scale is
recorded and folded into the saved weights, so saved dictionaries work in true units.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

ARCHITECTURES = ("relu", "topk", "batchtopk")  # what the trainer trains
# Loaded for encoding only (published dictionaries such as Gemma Scope): never trained here.
INFERENCE_ONLY_ARCHITECTURES = ("jumprelu",)


class DictionaryConfigError(ValueError):
    """Bad input for a dictionary or its training; the message names the field and the fix."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise DictionaryConfigError(message)


def _finite_positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class DictionaryConfig:
    """One dictionary: its shape, architecture and sparsity setting.

    ``relu`` is the original sparse-coding setup: ReLU encoder with a pre-encoder bias
    (``b_dec`` is subtracted from the input), unit-norm decoder rows, and an L1 penalty on the
    feature activations weighted by the decoder row norms (``l1_coefficient``). ``topk`` keeps
    the ``k`` largest pre-activations per token; ``batchtopk`` keeps the ``k * batch`` largest
    over the whole batch (and learns a threshold used at inference). Both TopK variants revive
    dead features with the AuxK loss (weight ``aux_k_coefficient``). ``jumprelu`` (a learned
    per-feature threshold, as in Gemma Scope) is for loading published dictionaries; it is not
    trained here.
    """

    d_in: int
    d_sae: int
    architecture: str = "relu"
    l1_coefficient: float = 2.0
    k: int = 32
    aux_k_coefficient: float = 1 / 32
    model_name: str = ""
    hook_name: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        _check(isinstance(self.d_in, int) and self.d_in >= 1, f"d_in={self.d_in} must be >= 1")
        _check(isinstance(self.d_sae, int) and self.d_sae >= 1,
               f"d_sae={self.d_sae} must be >= 1 (use expansion >= 1/d_in)")
        known = ARCHITECTURES + INFERENCE_ONLY_ARCHITECTURES
        _check(self.architecture in known,
               f"architecture {self.architecture!r} is unknown (choose {', '.join(known)})")
        _check(_finite_positive(self.l1_coefficient),
               f"l1_coefficient={self.l1_coefficient} must be a positive number")
        _check(isinstance(self.k, int) and self.k >= 1, f"k={self.k} must be >= 1")
        _check(self.architecture in ("relu", "jumprelu") or self.k <= self.d_sae,
               f"k={self.k} must be at most d_sae={self.d_sae}")
        _check(isinstance(self.aux_k_coefficient, (int, float)) and self.aux_k_coefficient >= 0,
               f"aux_k_coefficient={self.aux_k_coefficient} must be >= 0")

    @classmethod
    def from_expansion(cls, d_in: int, expansion: float, **kwargs: Any) -> DictionaryConfig:
        """A config with ``d_sae = round(d_in * expansion)`` (1x, 2x, 4x, 8x, ...)."""
        _check(_finite_positive(expansion), f"expansion={expansion} must be a positive number")
        return cls(d_in=d_in, d_sae=max(1, round(d_in * expansion)), **kwargs)

    @property
    def expansion(self) -> float:
        return self.d_sae / self.d_in


@dataclass(frozen=True)
class TrainConfig:
    """How to train: budget, batch, Adam, schedules, dead-feature handling, logging.

    ``lr`` defaults to ``0.05 / sqrt(d_in)`` (Adam; 2.1e-3 for d_in = 576): weights scale as
    ``1 / sqrt(d_in)``, so a fixed step size would be too small for narrow inputs or too large
    for wide ones. ``n_tokens`` is the training budget; a finite source shorter than that (an
    activation file) is reshuffled and repeated. The learning rate warms up linearly over
    ``lr_warmup_steps`` and decays linearly to zero over the last ``lr_decay_fraction`` of the
    steps; the L1 coefficient warms up over the first ``l1_warmup_fraction``. A feature is dead
    when it has not fired for ``dead_after_tokens`` tokens: ReLU dictionaries resample dead
    features every ``resample_every`` steps during the first ``resample_until`` fraction of
    training; TopK dictionaries feed them to the AuxK loss.
    """

    n_tokens: int = 2_000_000
    batch_size: int = 4096
    lr: float | None = None
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_warmup_steps: int = 50
    lr_decay_fraction: float = 0.2
    l1_warmup_fraction: float = 0.05
    dead_after_tokens: int = 200_000
    resample_every: int = 100
    resample_until: float = 0.5
    log_every: int = 25
    eval_tokens: int = 65_536
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        _check(isinstance(self.n_tokens, int) and self.n_tokens >= 1,
               f"n_tokens={self.n_tokens} must be >= 1")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1,
               f"batch_size={self.batch_size} must be >= 1")
        _check(self.lr is None or _finite_positive(self.lr),
               f"lr={self.lr} must be a positive number (or None: 0.05 / sqrt(d_in))")
        _check(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
               f"adam_betas={self.adam_betas} must be two numbers in [0, 1)")
        _check(self.lr_warmup_steps >= 0, f"lr_warmup_steps={self.lr_warmup_steps} must be >= 0")
        for name in ("lr_decay_fraction", "l1_warmup_fraction", "resample_until"):
            value = getattr(self, name)
            _check(0 <= value <= 1, f"{name}={value} must be in [0, 1]")
        _check(self.dead_after_tokens >= 1,
               f"dead_after_tokens={self.dead_after_tokens} must be >= 1")
        _check(self.resample_every >= 1, f"resample_every={self.resample_every} must be >= 1")
        _check(self.log_every >= 1, f"log_every={self.log_every} must be >= 1")
        _check(self.eval_tokens >= 0, f"eval_tokens={self.eval_tokens} must be >= 0")

    def lr_for(self, d_in: int) -> float:
        """The learning rate for inputs of width ``d_in``."""
        return self.lr if self.lr is not None else 0.05 / math.sqrt(d_in)

    @property
    def n_steps(self) -> int:
        return max(1, math.ceil(self.n_tokens / self.batch_size))


@dataclass(frozen=True)
class ActivationConfig:
    """Where activations come from: a hook, a context length, batching and the shuffle buffer.

    Each context is ``context_size`` tokens: BOS followed by ``context_size - 1`` text tokens.
    BOS positions are never used for training (their activations are huge outliers).
    """

    hook_name: str
    context_size: int = 128
    contexts_per_batch: int = 32
    buffer_tokens: int = 262_144
    text_column: str = "text"
    seed: int = 0

    def __post_init__(self) -> None:
        _check(bool(self.hook_name), "hook_name is empty (e.g. blocks.2.hook_resid_post)")
        _check(self.context_size >= 2, f"context_size={self.context_size} must be >= 2 "
               "(BOS plus at least one token)")
        _check(self.contexts_per_batch >= 1,
               f"contexts_per_batch={self.contexts_per_batch} must be >= 1")
        _check(self.buffer_tokens >= 1, f"buffer_tokens={self.buffer_tokens} must be >= 1")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build ``cls`` from a dict, rejecting unknown keys with the list of valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    _check(not unknown, f"{cls.__name__}: unknown key(s) {', '.join(unknown)} "
           f"(valid: {', '.join(sorted(names))})")
    data = dict(data)
    if "adam_betas" in data:
        data["adam_betas"] = tuple(data["adam_betas"])
    return cls(**data)
