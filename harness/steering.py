"""Interventions and the one context manager that installs and removes their hooks.

Hook names are TransformerLens names; each resolves to a module of the plain HF model through the
TransformerBridge's architecture adapter (so any architecture it supports works):

    blocks.{L}.hook_resid_pre    input of block L            [batch, pos, d_model]
    blocks.{L}.hook_resid_post   output of block L           [batch, pos, d_model]
    blocks.{L}.hook_attn_out     output of attention L       [batch, pos, d_model]
    blocks.{L}.hook_mlp_out      output of the MLP of L      [batch, pos, d_model]
    blocks.{L}.attn.hook_z       per-head attention outputs before the output projection
                                 [batch, pos, n_heads, d_head]; an intervention names one head

``positions`` selects where a vector is added: ``all`` positions, the ``prompt`` (the prefill
pass) or ``generated`` tokens only (decoding steps). A running token counter tells them apart,
so the semantics hold with and without a KV cache.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.config import POSITIONS, ConfigError
from harness.models import TESTED_ARCHITECTURES, architecture_of

_HOOK_RE = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_attn_out|hook_mlp_out|"
                      r"attn\.hook_z)$")
HOOK_KINDS = ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z")


@dataclass(frozen=True)
class HookSite:
    """Where a TransformerLens hook name lives in the plain HF model."""

    name: str
    layer: int
    kind: str
    module: Any = field(repr=False)
    width: int            # size of one intervention vector (d_model, or d_head for attn.hook_z)
    n_heads: int = 1


@dataclass(frozen=True)
class Intervention:
    """Add ``magnitude * vector`` at ``hook`` (for one ``head`` of attn.hook_z) on ``positions``.

    ``vector`` is a 1-D tensor of the hook's width; ``label`` records where it came from.
    """

    hook: str
    vector: torch.Tensor
    magnitude: float
    positions: str = "all"
    head: int | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.magnitude, (int, float)) or not math.isfinite(self.magnitude):
            raise ConfigError(f"magnitude {self.magnitude!r} for {self.hook} must be a finite number")
        if self.positions not in POSITIONS:
            raise ConfigError(f"positions {self.positions!r} is unknown (choose {', '.join(POSITIONS)})")
        if self.vector.ndim != 1 or not torch.isfinite(self.vector).all():
            raise ConfigError(f"the direction for {self.hook} must be a finite 1-D vector "
                              f"(got shape {tuple(self.vector.shape)})")


def _module_at(root: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


# Where each hook kind must sit for the hooks below to act on it: the input ("hook_in") of a
# module (a forward pre-hook) or its output ("hook_out", a forward hook).
_KIND_SIDE = {"hook_resid_pre": "hook_in", "hook_resid_post": "hook_out",
              "hook_attn_out": "hook_out", "hook_mlp_out": "hook_out", "attn.hook_z": "hook_in"}


def _unsupported(model, detail: str) -> ConfigError:
    return ConfigError(f"--model {model.name}: architecture {architecture_of(model.hf_model)} is "
                       f"not supported for steering ({detail}); tested: "
                       f"{', '.join(TESTED_ARCHITECTURES)}")


def _alias_module(model, layer: int, kind: str) -> Any:
    """The HF module whose input/output the bridge's hook ``blocks.{layer}.{kind}`` reads.

    The bridge's block and attention components alias each TransformerLens name to a
    submodule's ``hook_in``/``hook_out`` (e.g. Gemma 2/3 and OLMo 2 put ``hook_attn_out`` on the
    post-attention norm's output, the tensor added to the residual; ``attn.hook_z`` is the
    output projection's input everywhere); the adapter's component mapping gives each
    submodule's path in the HF model.
    """
    mapping = model.bridge.adapter.component_mapping["blocks"]
    component = model.bridge.blocks[layer]
    module = block_modules(model)[layer]
    hook = kind
    if kind == "attn.hook_z":
        component, mapping, hook = component.attn, mapping.submodules["attn"], "hook_z"
        module = _module_at(module, mapping.name)
    target = (getattr(component, "hook_aliases", None) or {}).get(hook)
    *path, side = (target or "?").split(".")
    if side != _KIND_SIDE[kind]:
        raise _unsupported(model, f"its bridge has {kind} at {target!r}")
    for part in path:
        sub = (mapping.submodules or {}).get(part)
        if sub is None:
            raise _unsupported(model, f"its bridge has {kind} at {target!r}")
        module, mapping = _module_at(module, sub.name), sub
    return module


def block_modules(model) -> Any:
    """The HF model's list of transformer blocks (``blocks.L`` is item L), per the bridge's
    adapter mapping."""
    return _module_at(model.hf_model, model.bridge.adapter.component_mapping["blocks"].name)


def resolve_hook(model, name: str) -> HookSite:
    """The HF module behind TransformerLens hook ``name``; a clear error listing valid names.

    The module is the one the TransformerBridge reads the hook from (its adapter's mapping),
    so what a hook records equals the bridge's ``run_with_cache`` on every tested architecture.
    """
    match = _HOOK_RE.match(name)
    if not match or int(match.group(1)) >= model.n_layers:
        raise ConfigError(
            f"hook {name!r} is unknown for {model.name} (valid: blocks.L.{{{', '.join(HOOK_KINDS)}}} "
            f"with L in 0..{model.n_layers - 1}, e.g. blocks.2.hook_resid_post)")
    layer, kind = int(match.group(1)), match.group(2)
    module = _alias_module(model, layer, kind)
    if kind != "attn.hook_z":
        return HookSite(name, layer, kind, module, model.d_model)
    cfg = model.bridge.cfg
    return HookSite(name, layer, kind, module, int(cfg.d_head), int(cfg.n_heads))


def check_intervention(site: HookSite, iv: Intervention) -> None:
    if iv.vector.numel() != site.width:
        raise ConfigError(f"direction {iv.label or ''} for {site.name} has size {iv.vector.numel()}, "
                          f"the hook needs {site.width}")
    if site.kind == "attn.hook_z":
        if iv.head is None or not 0 <= iv.head < site.n_heads:
            raise ConfigError(f"{site.name} needs a head in 0..{site.n_heads - 1} (got {iv.head})")
    elif iv.head is not None:
        raise ConfigError(f"{site.name} is not a per-head hook; drop head={iv.head}")


def validate(model, interventions: Sequence[Intervention]) -> None:
    """Check every intervention against its hook (name, width, head) before any work starts."""
    for iv in interventions:
        check_intervention(resolve_hook(model, iv.hook), iv)


class TokenCounter:
    """Counts the positions the model has processed since ``reset``: tells prompt from generated."""

    def __init__(self) -> None:
        self.seen = 0
        self.prompt_len: int | None = None

    def reset(self, seen: int = 0, prompt_len: int | None = None) -> None:
        """Start a new prompt batch; ``seen``/``prompt_len`` when its first ``seen`` positions
        are already in a KV cache (a shared prefix) and the prompt is ``prompt_len`` long."""
        self.seen, self.prompt_len = seen, prompt_len

    def pre_forward(self, _module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"]
        self._chunk = int(ids.shape[1])
        if self.prompt_len is None:  # the first pass of a generate call is the prompt
            self.prompt_len = self._chunk

    def post_forward(self, *_):
        self.seen += self._chunk


def _deltas(site: HookSite, ivs: list[Intervention], ref: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per position class, the summed vector to add at this site (full width of the tensor)."""
    width = site.width * site.n_heads
    out: dict[str, torch.Tensor] = {}
    for iv in ivs:
        delta = out.setdefault(iv.positions, torch.zeros(width, dtype=ref.dtype, device=ref.device))
        vec = iv.vector.to(dtype=ref.dtype, device=ref.device) * iv.magnitude
        if site.kind == "attn.hook_z":
            delta[iv.head * site.width:(iv.head + 1) * site.width] += vec
        else:
            delta += vec
    return out


def _make_adder(deltas: dict[str, torch.Tensor], counter: TokenCounter):
    def add(x: torch.Tensor) -> torch.Tensor:
        s = x.shape[1]
        start, plen = counter.seen, counter.prompt_len or 0
        x = x + deltas["all"] if "all" in deltas else x
        for cls, delta in deltas.items():
            if cls == "all":
                continue
            pos = torch.arange(start, start + s, device=x.device)
            mask = (pos < plen) if cls == "prompt" else (pos >= plen)
            if mask.any():
                x = x + mask[:, None].to(x.dtype) * delta
        return x
    return add


class RowGroups:
    """Which steering group each row of the current batch belongs to (per-row steering).

    ``select`` is called before each forward/generate call; adders gather their per-group
    delta tables with the index once per selection (``version`` tells them it changed)."""

    def __init__(self, n_groups: int) -> None:
        self.n_groups, self.index, self.version = n_groups, None, 0

    def select(self, groups: Sequence[int], device: torch.device | str) -> None:
        if any(not 0 <= g < self.n_groups for g in groups):
            raise ValueError(f"row groups {sorted(set(groups))} outside 0..{self.n_groups - 1}")
        self.index = torch.as_tensor(list(groups), dtype=torch.long, device=device)
        self.version += 1


def _row_tables(site: HookSite, groups: list[list[Intervention]], ref: torch.Tensor
                ) -> dict[str, torch.Tensor]:
    """Per position class, a [n_groups, width] table of each group's summed vector (zeros
    for groups not steered at this site or in that class); rows summed as ``_deltas`` sums."""
    width = site.width * site.n_heads
    per_group = [_deltas(site, ivs, ref) for ivs in groups]
    classes = [c for c in POSITIONS if any(c in d for d in per_group)]
    zero = torch.zeros(width, dtype=ref.dtype, device=ref.device)
    return {c: torch.stack([d.get(c, zero) for d in per_group]) for c in classes}


def _make_row_adder(tables: dict[str, torch.Tensor], counter: TokenCounter, rows: RowGroups):
    """Like ``_make_adder``, with each row's own vectors: x[b] + table[group of b] (same
    element-wise operations in the same order, so a row gets exactly what it gets alone)."""
    gathered: dict[str, torch.Tensor] = {}
    seen_version = [-1]

    def add(x: torch.Tensor) -> torch.Tensor:
        if rows.index is None or rows.index.numel() != x.shape[0]:
            raise RuntimeError(f"per-row steering: {x.shape[0]} rows in the batch but "
                               f"{0 if rows.index is None else rows.index.numel()} selected "
                               "(call state.select_rows before each forward)")
        if seen_version[0] != rows.version:
            gathered.clear()
            gathered.update({c: t[rows.index][:, None, :] for c, t in tables.items()})
            seen_version[0] = rows.version
        s = x.shape[1]
        start, plen = counter.seen, counter.prompt_len or 0
        x = x + gathered["all"] if "all" in gathered else x
        for cls, delta in gathered.items():
            if cls == "all":
                continue
            pos = torch.arange(start, start + s, device=x.device)
            mask = (pos < plen) if cls == "prompt" else (pos >= plen)
            if mask.any():
                x = x + mask[None, :, None].to(x.dtype) * delta
        return x
    return add


@dataclass
class HookState:
    """What ``hooks`` yields: the token counter, the recorded activations and, with per-row
    steering, the row-group selector."""

    counter: TokenCounter
    records: dict[str, list[torch.Tensor]]
    rows: RowGroups | None = None

    def reset(self, seen: int = 0, prompt_len: int | None = None) -> None:
        """Call before each new generate/forward call on a fresh prompt batch. When the batch
        continues a cached prefix of ``seen`` positions, pass ``seen`` and the whole prompt's
        length ``prompt_len`` (prefix + padded rest), so positions keep their meaning."""
        self.counter.reset(seen, prompt_len)

    def select_rows(self, groups: Sequence[int], device: torch.device | str = "cpu") -> None:
        """Per-row steering: row b of the next forward passes is steered by ``groups[b]``
        (an index into the ``groups`` given to ``hooks``)."""
        if self.rows is None:
            raise RuntimeError("select_rows needs hooks(..., groups=[...])")
        self.rows.select(groups, device)


@contextmanager
def hooks(model, interventions: Sequence[Intervention] = (),
          record: Sequence[str] = (),
          groups: Sequence[Sequence[Intervention]] | None = None) -> Iterator[HookState]:
    """The one way hooks reach a model: install ``interventions`` (and recorders for the hook
    names in ``record``) on ``model.hf_model``; every hook is removed in ``finally``.

    Per-row steering: pass ``groups`` (a list of intervention lists, one per steering
    configuration; ``[]`` is unsteered) instead of ``interventions``, and before each forward
    or generate call ``state.select_rows([group of row 0, group of row 1, ...])``. Each row is
    steered exactly as it would be alone by its group's interventions (per site, per-group
    [batch, width] deltas; zeros for unsteered rows).

    Recorded activations are detached tensors, one per forward pass, in ``state.records[hook]``:
    [batch, pos, d_model], or [batch, pos, n_heads, d_head] for attn.hook_z. Recorders see the
    activation after any intervention at the same hook.
    """
    if groups is not None and interventions:
        raise ValueError("hooks: give interventions or groups, not both")
    counter = TokenCounter()
    rows = RowGroups(len(groups)) if groups is not None else None
    state = HookState(counter, {h: [] for h in record}, rows)
    handles = []
    try:
        handles.append(model.hf_model.register_forward_pre_hook(counter.pre_forward,
                                                                with_kwargs=True))
        handles.append(model.hf_model.register_forward_hook(counter.post_forward))
        ref = next(model.hf_model.parameters())
        if groups is None:
            for site, ivs in _by_site(model, interventions).values():
                if all(iv.magnitude == 0 for iv in ivs):
                    continue  # adding zero is the identity: skip the hook entirely
                handles.append(_install(site, _make_adder(_deltas(site, ivs, ref), counter)))
        else:
            per_group = [_by_site(model, ivs) for ivs in groups]
            sites = {name: site for g in per_group for name, (site, _) in g.items()}
            for name, site in sites.items():
                lists = [list(g[name][1]) if name in g else [] for g in per_group]
                if all(iv.magnitude == 0 for ivs in lists for iv in ivs):
                    continue
                handles.append(_install(site, _make_row_adder(_row_tables(site, lists, ref),
                                                              counter, rows)))
        for name in record:
            handles.append(_install_recorder(resolve_hook(model, name), state.records[name]))
        yield state
    finally:
        for h in handles:
            h.remove()


def _by_site(model, interventions: Sequence[Intervention]
             ) -> dict[str, tuple[HookSite, list[Intervention]]]:
    """Interventions grouped by hook name (each checked against its resolved site)."""
    by_site: dict[str, tuple[HookSite, list[Intervention]]] = {}
    for iv in interventions:
        site = by_site.get(iv.hook, (resolve_hook(model, iv.hook), []))[0]
        check_intervention(site, iv)
        by_site.setdefault(iv.hook, (site, []))[1].append(iv)
    return by_site


def _install(site: HookSite, add):
    if site.kind == "hook_resid_pre":
        def pre(_m, args, kwargs):
            if args:
                return (add(args[0]), *args[1:]), kwargs
            kwargs["hidden_states"] = add(kwargs["hidden_states"])
            return args, kwargs
        return site.module.register_forward_pre_hook(pre, with_kwargs=True)
    if site.kind == "attn.hook_z":
        return site.module.register_forward_pre_hook(lambda _m, args: (add(args[0]), *args[1:]))

    def post(_m, _args, output):
        if isinstance(output, tuple):
            return (add(output[0]), *output[1:])
        return add(output)
    return site.module.register_forward_hook(post)


def _install_recorder(site: HookSite, store: list[torch.Tensor]):
    if site.kind == "attn.hook_z":
        def z_hook(_m, args):
            x = args[0].detach()
            store.append(x.view(*x.shape[:2], site.n_heads, site.width))
        return site.module.register_forward_pre_hook(z_hook)
    if site.kind == "hook_resid_pre":
        def pre_hook(_m, args, kwargs):
            store.append((args[0] if args else kwargs["hidden_states"]).detach())
        return site.module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def post_hook(_m, _a, out):
        store.append((out[0] if isinstance(out, tuple) else out).detach())
    return site.module.register_forward_hook(post_hook)
