"""Frozen, validated configs for models, steering and generation; device and dtype decided here.

Every config is a frozen dataclass validated in ``__post_init__`` and serialisable to JSON
(``to_dict``), so each artefact can be written beside the config that made it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from evals.errors import InputError

EMBEDDED_MODEL = "smollm2-135m-instruct"
POSITIONS = ("all", "prompt", "generated")
PROMPT_STYLES = ("auto", "qa", "chat")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ConfigError(InputError):
    """A config value is invalid; the message names the field and what would fix it."""


def resolve_device(device: str = "auto") -> torch.device:
    """The one place the compute device is decided: ``auto`` means cuda when present, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"--device {device!r} is not a torch device (try auto, cpu, cuda)") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r}: CUDA is not available here (use auto or cpu)")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The one place the dtype is decided: ``auto`` is float32 on CPU and bfloat16 on CUDA."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ConfigError(f"--dtype {dtype!r} is unknown (choose auto, {', '.join(_DTYPES)})")
    return _DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to load and where: a hub id, an HF folder, a .gguf file or the embedded default."""

    name: str = EMBEDDED_MODEL
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("model: empty name (give a hub id, a folder, a .gguf file or "
                              f"{EMBEDDED_MODEL})")
        if self.dtype != "auto" and self.dtype not in _DTYPES:
            raise ConfigError(f"model.dtype {self.dtype!r} is unknown "
                              f"(choose auto, {', '.join(_DTYPES)})")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. Greedy unless ``do_sample``; sampling is seeded by ``seed``."""

    max_new_tokens: int = 64
    min_new_tokens: int = 0  # > 0 forces that many tokens before EOS may end (benchmarks)
    batch_size: int = 16
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    prompt_style: str = "auto"

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens} must be >= 1")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError(f"min_new_tokens={self.min_new_tokens} must be in 0..max_new_tokens")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature={self.temperature} must be a positive number")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} must be in (0, 1]")
        if self.prompt_style not in PROMPT_STYLES:
            raise ConfigError(f"prompt_style {self.prompt_style!r} is unknown "
                              f"(choose {', '.join(PROMPT_STYLES)})")


@dataclass(frozen=True)
class InterventionConfig:
    """The JSON-able description of one intervention: what a results row records.

    ``direction`` is the SPEC the vector came from (``random:SEED``, ``file.safetensors:name``,
    ``feature:DIR:ID``, ...); ``head`` is set for per-head hooks (``blocks.L.attn.hook_z``).
    """

    hook: str
    direction: str
    magnitude: float
    positions: str = "all"
    head: int | None = None
    scale: str = "raw"

    def __post_init__(self) -> None:
        if not math.isfinite(self.magnitude):
            raise ConfigError(f"magnitude {self.magnitude} must be a finite number")
        if self.positions not in POSITIONS:
            raise ConfigError(f"positions {self.positions!r} is unknown "
                              f"(choose {', '.join(POSITIONS)})")
        if self.scale not in ("raw", "std"):
            raise ConfigError(f"scale {self.scale!r} is unknown (choose raw or std)")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-able data."""
    return dataclasses.asdict(cfg)


__all__ = [
    "EMBEDDED_MODEL",
    "POSITIONS",
    "ConfigError",
    "GenerationConfig",
    "InterventionConfig",
    "ModelConfig",
    "dtype_name",
    "field",
    "resolve_device",
    "resolve_dtype",
    "to_dict",
]
