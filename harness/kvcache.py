"""KV-cache helpers shared by generation and multiple-choice scoring: left padding, the shared
prompt prefix computed once (per steering group) and continued per batch, and the cache
argument's name across transformers versions.

The token prefix all prompts share (the QA primer's ~190 tokens, a chat template's system turn)
is run once, under the active hooks, and its KV cache is copied into every batch:
``[prefix][padding][rest of the prompt]``, positions counted from the attention mask as HF does,
so each prompt sees exactly the positions and context it would see alone.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch


def pad_left(prompts: Sequence[Sequence[int]], pad_id: int,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) [batch, max_len], left-padded with ``pad_id``."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids.to(device), mask.to(device)


MIN_SHARED_PREFIX = 16  # tokens: a shorter shared prefix is not worth computing apart


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix shared by all ``seqs`` (leaving at least one token each)."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for i in range(max(n, 0)):
        if any(s[i] != first[i] for s in seqs):
            return i
    return max(n, 0)


def window_allows_prefix(model, longest: int) -> bool:
    """Whether a shared prefix may be cached apart for sequences up to ``longest`` tokens: a
    sliding attention window (Mistral, Gemma 2/3) counts the padding between the prefix and
    the rest, so sequences longer than the window must run whole (left padding only)."""
    window = getattr(model, "attention_window", None)
    return window is None or longest <= window


def cache_kwarg(model) -> str:
    """The name the HF model's forward (and generate) takes a KV cache under."""
    params = inspect.signature(model.hf_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out):
    """The KV cache of a forward pass's output (either transformers naming)."""
    return getattr(out, "cache", None) or out.past_key_values


def prefix_cache(model, prefix: Sequence[int]):
    """The KV cache of one token sequence (batch 1), computed under whatever hooks are active."""
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=model.device)
    return output_cache(model.hf_model(input_ids=ids, use_cache=True, logits_to_keep=1))


def with_prefix(prefix: Sequence[int], cache, ids: torch.Tensor, mask: torch.Tensor,
                rows: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(input_ids, attention_mask, cache) for a batch continuing ``prefix``: the prefix's ids and
    a copy of its cache repeated over the batch (or, per-row steering, each row's group's
    cache: ``cache`` maps group -> cache, ``rows`` gives each row's group), then the
    left-padded rest."""
    batch = ids.shape[0]
    head = torch.tensor([list(prefix)], dtype=ids.dtype, device=ids.device).expand(batch, -1)
    return (torch.cat([head, ids], dim=1),
            torch.cat([torch.ones_like(head, dtype=mask.dtype), mask], dim=1),
            continue_prefix(cache, rows, batch))


def repeat_cache(cache, batch: int):
    """A copy of a batch-1 KV cache repeated ``batch`` times (the original stays reusable)."""
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(batch)
    return cache


def stack_caches(caches: Sequence[Any], rows: Sequence[int]):
    """A new KV cache whose row b is a copy of the batch-1 cache ``caches[rows[b]]`` (per-row
    steering: each steering group's shared prefix, computed alone, continued per row)."""
    if len(set(rows)) == 1:
        return repeat_cache(caches[rows[0]], len(rows))
    out = copy.deepcopy(caches[rows[0]])
    index = torch.as_tensor(list(rows), dtype=torch.long)
    for i, layer in enumerate(out.layers):
        if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
            continue
        sel = index.to(layer.keys.device)
        layer.keys = torch.cat([c.layers[i].keys for c in caches])[sel]
        layer.values = torch.cat([c.layers[i].values for c in caches])[sel]
    return out


def select_row(cache, row: int):
    """A batch-1 KV cache holding a copy of row ``row`` of ``cache`` (the original is kept)."""
    out = copy.copy(cache)
    out.layers = []
    for layer in cache.layers:
        one = copy.copy(layer)
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            one.keys = layer.keys[row:row + 1].clone()
            one.values = layer.values[row:row + 1].clone()
        out.layers.append(one)
    return out


def group_prefix_caches(model, state, prefix: Sequence[int], groups: Sequence[int] | None,
                        batched: bool = False):
    """The shared prefix's KV cache under the active hooks: one batch-1 cache, or (per-row
    steering) one per steering group in ``groups``, each computed alone as a cell alone would
    (``batched``: all groups in one forward pass, one row each: faster, equal up to
    batch-shape rounding)."""
    if groups is None:
        state.reset()
        return prefix_cache(model, prefix)
    keys = sorted(set(groups))
    if batched and len(keys) > 1:
        state.reset()
        state.select_rows(keys, model.device)
        ids = torch.tensor([list(prefix)] * len(keys), dtype=torch.long, device=model.device)
        cache = output_cache(model.hf_model(input_ids=ids, use_cache=True, logits_to_keep=1))
        return {g: select_row(cache, k) for k, g in enumerate(keys)}
    caches = {}
    for g in keys:
        state.reset()
        state.select_rows([g], model.device)
        caches[g] = prefix_cache(model, prefix)
    return caches


def continue_prefix(caches, rows: Sequence[int] | None, batch: int):
    """A batch's copy of the prefix cache(s): repeated, or stacked per row's group."""
    if rows is None:
        return repeat_cache(caches, batch)
    keys = sorted(caches)
    pos = {g: k for k, g in enumerate(keys)}
    return stack_caches([caches[g] for g in keys], [pos[g] for g in rows])
