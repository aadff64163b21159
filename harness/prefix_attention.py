"""Decode-step attention that reads a shared prompt prefix once, not once per row.

Every prompt of a decode batch starts with the same tokens (a chat template's system turn, the QA
primer). Stored in every row, their keys and values would be read again by every row at every
step, and attention at decode time is memory-bound. Here each row's cache holds only its own
tokens (the suffix), and one step's attention is split in two softmax parts merged exactly:

  suffix: each row's query against its own keys (masked), SDPA's CPU flash kernel, with the
          log-sum-exp of its scores;
  prefix: every row's query at once, as one query block against the prefix's keys (one read of
          them for the whole batch), with its log-sum-exp;
  merged: out = suffix + (prefix - suffix) * sigmoid(lse_prefix - lse_suffix), the softmax over
          the concatenated keys (the two parts weigh exp(lse_part) / (exp(lse_prefix) +
          exp(lse_suffix))).

Equal to attention over the whole row up to floating-point rounding (the sums are taken in
another order, as with another batch composition); tests/harness/test_prefix_attention.py
measures it. :class:`harness.decode.DecodeLoop` uses it in float32 on CPU for SDPA models without
a sliding window when every row shares one prefix cache (one steering group): with many groups
(packed sweeps) each group's prefix is a separate small read and the split cost more than it
saved (4.5-5% slower with 13 groups at batch 16), so those rows keep the prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


class PrefixTables:
    """Each layer's prefix keys and values ([1, kv_heads, prefix, head_dim]), from the prefix's
    batch-1 KV cache."""

    def __init__(self, cache) -> None:
        self.keys = [layer.keys for layer in cache.layers]
        self.values = [layer.values for layer in cache.layers]


def shared_prefix_attention(tables: PrefixTables, module, query, key, value, attention_mask,
                            scaling: float | None = None, **_kwargs):
    """The attention function of one decode step (HF's attention-interface signature): query
    [batch, heads, 1, head_dim]; key/value the rows' own slots; ``attention_mask`` their
    additive mask [batch, 1, 1, slots]. Returns ([batch, 1, heads, head_dim], None)."""
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    rep = heads // kv_heads
    q = query.reshape(batch, kv_heads, rep, dim)      # the query heads sharing a kv head
    out_s, lse_s = _flash(q, key, value, 0.0, False, attn_mask=attention_mask, scale=scaling)
    block = q.transpose(0, 1).reshape(1, kv_heads, batch * rep, dim)
    out_p, lse_p = _flash(block, tables.keys[module.layer_idx], tables.values[module.layer_idx],
                          0.0, False, scale=scaling)
    out_p = out_p.view(kv_heads, batch, rep, dim).transpose(0, 1)
    lse_p = lse_p.view(kv_heads, batch, rep).transpose(0, 1)
    out = torch.lerp(out_s, out_p, torch.sigmoid(lse_p - lse_s).unsqueeze(-1))
    return out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous(), None


@contextmanager
def prefix_attention(tables: PrefixTables) -> Iterator[None]:
    """Within the block, models whose attention is "sdpa" run :func:`shared_prefix_attention`
    with ``tables`` (restored on exit, whatever happens)."""
    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    before = local.get("sdpa")
    local["sdpa"] = lambda *args, **kwargs: shared_prefix_attention(tables, *args, **kwargs)
    try:
        yield
    finally:
        if before is None:
            local.pop("sdpa", None)
        else:
            local["sdpa"] = before
