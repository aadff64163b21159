"""Shared-prefix attention (harness.prefix_attention): one decode step's attention over the
prefix plus a row's own keys equals SDPA over the whole row; the decode loop's tokens with it
equal its tokens without it on the embedded model, and it is used only where it pays."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from harness.prefix_attention import PrefixTables, prefix_attention, shared_prefix_attention


def _cache(keys, values):
    return SimpleNamespace(layers=[SimpleNamespace(keys=keys, values=values)])


def test_prefix_attention__equals_sdpa_over_prefix_and_row():
    """Masked slots, grouped-query heads (three query heads per kv head): each row's output is
    SDPA over [the prefix; its own slots]."""
    g = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, dim, prefix, slots = 7, 6, 2, 16, 11, 9

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    pk, pv = randn(1, kv_heads, prefix, dim), randn(1, kv_heads, prefix, dim)
    q, k, v = randn(batch, heads, 1, dim), randn(batch, kv_heads, slots, dim), \
        randn(batch, kv_heads, slots, dim)
    live = torch.rand(batch, slots, generator=g) > 0.4
    live[:, -1] = True
    mask = torch.zeros(batch, 1, 1, slots).masked_fill_(~live[:, None, None], float("-inf"))
    got, _ = shared_prefix_attention(PrefixTables(_cache(pk, pv)), SimpleNamespace(layer_idx=0),
                                     q, k, v, mask, scaling=dim ** -0.5)
    assert got.shape == (batch, 1, heads, dim)
    for b in range(batch):
        keys = torch.cat([pk[0], k[b]], dim=1).repeat_interleave(heads // kv_heads, 0)
        values = torch.cat([pv[0], v[b]], dim=1).repeat_interleave(heads // kv_heads, 0)
        full = torch.cat([torch.zeros(prefix), mask[b, 0, 0]])
        want = torch.nn.functional.scaled_dot_product_attention(q[b], keys, values,
                                                                attn_mask=full,
                                                                scale=dim ** -0.5)
        torch.testing.assert_close(got[b, 0], want[:, 0], atol=1e-6, rtol=1e-6)


def test_prefix_attention__restores_the_attention_registry_on_error():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    before = ALL_ATTENTION_FUNCTIONS["sdpa"]
    tables = PrefixTables(_cache(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4)))
    with pytest.raises(RuntimeError, match="boom"):
        with prefix_attention(tables):
            assert ALL_ATTENTION_FUNCTIONS["sdpa"] is not before
            raise RuntimeError("boom")
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is before


@pytest.mark.slow
def test_decode__shared_prefix_tokens_equal_full_rows_on_the_embedded_model():
    """Chat prompts (a 51-token shared system turn), steered, 32 new tokens, rows refilled: the
    loop reading the prefix once gives the tokens of the loop storing it in every row. With two
    steering groups the loop keeps the prefix in every row (there the split cost more)."""
    from harness.config import GenerationConfig
    from harness.decode import DecodeLoop, Request
    from harness.directions import random_direction
    from harness.kvcache import common_prefix_length
    from harness.prompts import prompt_token_ids
    from harness.steering import Intervention, hooks
    from tests.helpers import embedded_model

    questions = ["Why is the sky blue?", "Who wrote Hamlet?", "Can pigs fly?",
                 "What happens if you crack your knuckles?", "Is the Earth flat?",
                 "Where is Paris?", "What is the capital of Japan?", "Do vaccines cause autism?"]
    model = embedded_model()
    prompts = [prompt_token_ids(q, "chat", model.tokenizer) for q in questions]
    shared = common_prefix_length(prompts)
    assert shared > 40
    steer = [Intervention("blocks.10.hook_resid_post", random_direction(3, model.d_model), 4.0)]
    requests = [Request(tuple(p)) for p in prompts]
    cfg = GenerationConfig(max_new_tokens=32, batch_size=4, prompt_style="chat")
    got = {}
    for on in (True, False):
        with hooks(model, steer) as state:
            loop = DecodeLoop(model, requests, cfg, state, prefix_len=shared, shared_prefix=on)
            got[on] = loop.run()
        assert (loop.prefix_tables is not None) == on
    assert got[True] == got[False]
    with hooks(model, groups=[[], steer]) as state:
        two = [Request(tuple(p), group=i % 2) for i, p in enumerate(prompts)]
        loop = DecodeLoop(model, two, cfg, state, prefix_len=shared)
        assert not loop.shared_prefix
