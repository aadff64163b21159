"""The one way the command line and the quickstart load a model: by name, device and dtype.

``load(name, device, dtype)`` is :func:`harness.models.load_model` over a :class:`ModelConfig`;
``load_args(args)`` reads ``--model/--device/--dtype``; ``judge_model_loader(device)`` is the
``model_loader(name) -> (hf_model, tokenizer)`` the judges take (each model loaded once).
"""

from __future__ import annotations

import functools
from typing import Any

from harness.config import ModelConfig


def load(name: str, device: str = "auto", dtype: str = "auto"):
    from harness.models import load_model

    return load_model(ModelConfig(name=name, device=device, dtype=dtype))


def load_args(args: Any):
    """The model named by a parsed ``--model``, ``--device`` and ``--dtype``."""
    return load(args.model, args.device, getattr(args, "dtype", "auto"))


@functools.lru_cache(maxsize=4)
def _hf_pair(name: str, device: str) -> tuple[Any, Any]:
    loaded = load(name, device)
    return loaded.hf_model, loaded.tokenizer


def judge_model_loader(device: str = "auto"):
    """``model_loader(name) -> (hf_model, tokenizer)`` for evals.judges (hub ids, folders, .gguf
    files and the embedded model's name all work)."""
    return lambda name: _hf_pair(name, device)
