"""Where steering directions come from, and how a direction SPEC becomes interventions.

SPECs (parsed by harness/directions/spec.py):
    random:SEED                  a seeded random unit vector of the hook's width
    PATH.safetensors[:NAME]      a vector stored in a safetensors file (no pickle), or a
                                 direction set (harness/directions/store.py)
    feature:DIR:ID               decoder row ID of the dictionary in DIR (true units); DIR may
                                 be a hub REF: hf://OWNER/REPO[@REV]/PATH, saelens://RELEASE/ID

Every direction is unit-normalised, so ``magnitude`` is the L2 norm of the added vector
(``scale="raw"``) or a multiple of the activations' standard deviation along the direction
(``scale="std"``, ITI's convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config import ConfigError
from harness.directions.spec import FeatureSpec, FileSpec, RandomSpec, Spec, parse_spec
from harness.steering import Intervention, hooks, resolve_hook


@dataclass(frozen=True)
class Direction:
    """A unit vector at one hook (one head for attn.hook_z), with the activations' std along it."""

    hook: str
    vector: torch.Tensor
    head: int | None = None
    std: float | None = None
    label: str = ""


def _unit(v: torch.Tensor, what: str) -> torch.Tensor:
    v = v.detach().to(torch.float32).flatten()
    norm = v.norm()
    if not torch.isfinite(v).all() or norm == 0:
        raise ConfigError(f"direction {what} is zero or not finite")
    return v / norm


def random_direction(seed: int, width: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return _unit(torch.randn(width, generator=gen), f"random:{seed}")


def load_safetensors_vector(spec: FileSpec) -> torch.Tensor:
    """The one tensor of a plain vector file (or the tensor ``spec.select`` names)."""
    from safetensors import safe_open

    path, name = spec.path, spec.select
    if not path.is_file():
        raise ConfigError(f"--direction {spec}: no such file {path}")
    with safe_open(str(path), framework="pt") as fh:
        keys = list(fh.keys())
        if not name:
            if len(keys) != 1:
                raise ConfigError(f"--direction {spec}: the file holds {len(keys)} tensors; name "
                                  f"one as {path}:NAME (one of: {', '.join(keys[:10])})")
            name = keys[0]
        if name not in keys:
            raise ConfigError(f"--direction {spec}: no tensor {name!r} (has: {', '.join(keys[:10])})")
        return fh.get_tensor(name)


def resolve_direction(spec: str | Spec, model, hook: str, head: int | None = None
                      ) -> list[Direction]:
    """The direction(s) ``spec`` names, checked against ``hook``'s width."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    from harness.directions.store import is_direction_set, resolve_set_spec

    if isinstance(parsed, FileSpec) and is_direction_set(parsed):  # ITI heads, mean-diff per hook

        return resolve_set_spec(parsed, model, hook, head)
    site = resolve_hook(model, hook)
    if isinstance(parsed, RandomSpec):
        vec = random_direction(parsed.seed, site.width)
    elif isinstance(parsed, FeatureSpec):
        from dictionaries.hub import feature_direction  # a folder or a hub REF

        vec = _unit(feature_direction(parsed.location, parsed.feature), str(parsed))
    else:
        vec = _unit(load_safetensors_vector(parsed), str(parsed))
    if vec.numel() != site.width:
        raise ConfigError(f"--direction {parsed} has size {vec.numel()}; hook {hook} needs "
                          f"{site.width}")
    return [Direction(hook, vec, head, None, str(parsed))]


@torch.inference_mode()
def projection_std(model, direction: Direction, prompts: Sequence[Sequence[int]],
                   batch_size: int = 16) -> float:
    """Std of activations projected on ``direction`` over the calibration prompts.

    Every real token position counts except each prompt's first (BOS-like positions carry
    outlier norms that would dominate the estimate).
    """
    from harness.kvcache import pad_left

    values = []
    with hooks(model, record=[direction.hook]) as state:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            ids, mask = pad_left(batch, model.tokenizer.pad_token_id, model.device)
            state.records[direction.hook].clear()
            model.hf_model(input_ids=ids, attention_mask=mask)
            acts = state.records[direction.hook][0]
            if direction.head is not None:
                acts = acts[:, :, direction.head]
            proj = acts.float() @ direction.vector.to(acts.device)
            keep = mask.bool().clone()
            keep[torch.arange(len(batch)), mask.argmax(dim=1)] = False  # each prompt's first token
            values.append(proj[keep])
    return float(torch.cat(values).std())


def to_interventions(directions: Sequence[Direction], magnitude: float, positions: str = "all",
                     scale: str = "raw") -> list[Intervention]:
    """Interventions adding ``magnitude`` (raw norm, or std units) along each direction."""
    out = []
    for d in directions:
        if scale == "std" and d.std is None:
            raise ConfigError(f"--scale std: no std measured for {d.label} at {d.hook}")
        coef = magnitude * (d.std if scale == "std" else 1.0)
        out.append(Intervention(d.hook, d.vector, float(coef), positions, d.head, d.label))
    return out
