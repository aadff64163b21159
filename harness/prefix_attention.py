"""Decode-step attention that reads a shared prompt prefix once, not once per row.

Every prompt of a decode batch starts with the same tokens (a chat template's system turn, the QA
primer), and each steering group computes their keys and values once. Stored in every row, they
would be read again by every row at every step: attention at decode time is memory-bound, so
those copies cost as much as the rest of the row. Here each row's cache holds only its own tokens
(the suffix), and one step's attention for a row is split in two softmax parts merged exactly:

  suffix: the row's query against its own keys (masked), SDPA's CPU flash kernel, with the
          log-sum-exp of its scores;
  prefix: all rows of a steering group at once, as one query block against the group's prefix
          keys (one read of them for the whole batch), with its log-sum-exp;
  merged: out = suffix + (prefix - suffix) * sigmoid(lse_prefix - lse_suffix), which is the
          softmax over the concatenated keys (the weights of the two parts are
          exp(lse_part) / (exp(lse_prefix) + exp(lse_suffix))).

Equal to attention over the whole row up to floating-point rounding (the sums are taken in a
different order), as a different batch composition is; tests/harness/test_prefix_attention.py
measures it. Used by :class:`harness.decode.DecodeLoop` in float32 on CPU with SDPA models without
a sliding window; the prefill is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


class PrefixTables:
    """Each layer's prefix keys and values, one row per steering group ([groups, kv_heads,
    prefix, head_dim]), and where each batch row's queries go in the prefix query block."""

    def __init__(self, caches: dict[int, object]) -> None:
        self.groups = sorted(caches)
        self.position = {g: i for i, g in enumerate(self.groups)}
        layers = len(caches[self.groups[0]].layers)
        self.keys = [torch.cat([caches[g].layers[i].keys for g in self.groups]) for i in
                     range(layers)]
        self.values = [torch.cat([caches[g].layers[i].values for g in self.groups]) for i in
                       range(layers)]
        self._rows: tuple[int, ...] | None = None

    def select(self, groups: Sequence[int]) -> None:
        """The steering group of each batch row (a row of an absent group reads group 0's
        prefix: such rows are empty and their output is dropped)."""
        rows = tuple(self.position.get(g, 0) for g in groups)
        if rows == self._rows:
            return
        rank, seen = [], [0] * len(self.groups)
        for g in rows:
            rank.append(seen[g])
            seen[g] += 1
        device = self.keys[0].device
        self.group_index = torch.tensor(rows, dtype=torch.long, device=device)
        self.rank_index = torch.tensor(rank, dtype=torch.long, device=device)
        self.block = max(seen)           # query rows per group in the prefix query block
        self._rows = rows


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
    keys, values = tables.keys[module.layer_idx], tables.values[module.layer_idx]
    n_groups = len(tables.groups)
    if n_groups == 1:   # every row reads the one prefix: the batch is the query block
        block = q.transpose(0, 1).reshape(1, kv_heads, batch * rep, dim)
        out_p, lse_p = _flash(block, keys, values, 0.0, False, scale=scaling)
        out_p = out_p.view(kv_heads, batch, rep, dim).transpose(0, 1)
        lse_p = lse_p.view(kv_heads, batch, rep).transpose(0, 1)
    else:               # each group's rows, padded to the largest group, read its prefix
        block = q.new_zeros(n_groups, kv_heads, tables.block, rep, dim)
        block[tables.group_index, :, tables.rank_index] = q
        out_p, lse_p = _flash(block.view(n_groups, kv_heads, tables.block * rep, dim),
                              keys, values, 0.0, False, scale=scaling)
        out_p = out_p.view(n_groups, kv_heads, tables.block, rep, dim)[
            tables.group_index, :, tables.rank_index]
        lse_p = lse_p.view(n_groups, kv_heads, tables.block, rep)[
            tables.group_index, :, tables.rank_index]
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
