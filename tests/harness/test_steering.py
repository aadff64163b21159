"""Steering hooks: names, positions semantics inside real generate calls, per-head, several at once."""

from __future__ import annotations

import math

import pytest
import torch

from harness.config import ConfigError, GenerationConfig
from harness.generation import generate_kwargs
from harness.kvcache import pad_left
from harness.steering import Intervention, hooks, resolve_hook
from tests.helpers import tiny_llama

PROMPTS = [[1, 520, 2361, 314, 1175], [1, 8181, 2361]]


def _generate_recording(model, interventions, hook, new_tokens=4):
    """Run HF generate under the interventions; return (prompt ids, output ids, records)."""
    ids, mask = pad_left(PROMPTS, model.tokenizer.pad_token_id, model.device)
    kwargs = generate_kwargs(GenerationConfig(max_new_tokens=new_tokens), model.tokenizer, "chat")
    kwargs["eos_token_id"] = None  # random tiny model: never stop early
    with torch.inference_mode(), hooks(model, interventions, record=[hook]) as state:
        state.reset()
        out = model.hf_model.generate(input_ids=ids, attention_mask=mask,
                                      min_new_tokens=new_tokens, **kwargs)
    return ids, out, state.records[hook]


def _no_hooks_left(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks
               for m in model.hf_model.modules())


@pytest.mark.parametrize("positions, on_prompt, on_generated", [
    ("all", True, True), ("prompt", True, False), ("generated", False, True)])
def test_hooks__positions_select_prefill_or_decoding_steps(positions, on_prompt, on_generated):
    """At blocks.0.hook_resid_pre the activation is the token embedding (no cache involved), so
    the recorded value minus the embedding is exactly what the intervention added, step by step."""
    model = tiny_llama()
    vec = torch.randn(model.d_model)
    vec /= vec.norm()
    iv = Intervention("blocks.0.hook_resid_pre", vec, 3.0, positions)
    ids, out, recs = _generate_recording(model, [iv], "blocks.0.hook_resid_pre")
    embed = model.hf_model.get_input_embeddings()
    embed = torch.inference_mode()(embed.forward)
    prefill, steps = recs[0], recs[1:]
    assert prefill.shape[1] == ids.shape[1] and len(steps) == out.shape[1] - ids.shape[1] - 1
    added = prefill - embed(ids)
    expect = 3.0 * vec if on_prompt else torch.zeros_like(vec)
    torch.testing.assert_close(added, expect.expand_as(added), atol=1e-5, rtol=0)
    for k, step in enumerate(steps):
        fed = out[:, ids.shape[1] + k: ids.shape[1] + k + 1]
        added = step - embed(fed)
        expect = 3.0 * vec if on_generated else torch.zeros_like(vec)
        torch.testing.assert_close(added, expect.expand_as(added), atol=1e-5, rtol=0)
    assert _no_hooks_left(model)


@pytest.mark.parametrize("positions, on_prompt, on_generated", [
    ("all", True, True), ("prompt", True, False), ("generated", False, True)])
def test_hooks__positions_hold_when_a_shared_prefix_comes_from_a_cache(positions, on_prompt,
                                                                      on_generated):
    """generate_answers' shared-prefix path (prefix run once, its cache copied into a batch of
    padded suffixes, the counter told where the prompt ends): the prefix pass and the suffixes
    are prompt, the decoding steps generated — checked step by step as above."""
    from harness.kvcache import cache_kwarg, prefix_cache, with_prefix

    model = tiny_llama()
    vec = torch.randn(model.d_model)
    vec /= vec.norm()
    iv = Intervention("blocks.0.hook_resid_pre", vec, 3.0, positions)
    prefix, new_tokens = [1, 520, 2361, 314, 1175, 77], 3
    kwargs = generate_kwargs(GenerationConfig(max_new_tokens=new_tokens), model.tokenizer, "chat")
    kwargs["eos_token_id"] = None
    embed = torch.inference_mode()(model.hf_model.get_input_embeddings().forward)
    with torch.inference_mode(), hooks(model, [iv], record=["blocks.0.hook_resid_pre"]) as state:
        state.reset()
        cache = prefix_cache(model, prefix)
        ids, mask = pad_left([[8181, 2361, 5], [42]], model.tokenizer.pad_token_id, model.device)
        ids, mask, cache = with_prefix(prefix, cache, ids, mask)
        state.reset(len(prefix), ids.shape[1])
        out = model.hf_model.generate(input_ids=ids, attention_mask=mask, min_new_tokens=new_tokens,
                                      **{cache_kwarg(model): cache}, **kwargs)
    recs = state.records["blocks.0.hook_resid_pre"]
    assert [r.shape[:2] for r in recs] == [(1, 6), (2, 3)] + [(2, 1)] * (new_tokens - 1)
    prompt_vec = 3.0 * vec if on_prompt else torch.zeros_like(vec)
    gen_vec = 3.0 * vec if on_generated else torch.zeros_like(vec)
    fed = [torch.tensor([prefix]), ids[:, len(prefix):]] + [
        out[:, ids.shape[1] + k:ids.shape[1] + k + 1] for k in range(new_tokens - 1)]
    for k, (rec, tokens) in enumerate(zip(recs, fed)):
        expect = prompt_vec if k < 2 else gen_vec
        torch.testing.assert_close(rec - embed(tokens), expect.expand_as(rec), atol=1e-5, rtol=0)
    assert _no_hooks_left(model)


def test_hooks__per_head_intervention_moves_only_that_head_before_the_output_projection():
    model = tiny_llama()
    site = resolve_hook(model, "blocks.1.attn.hook_z")
    assert (site.n_heads, site.width) == (4, 16)
    vec = torch.randn(site.width)
    ids = torch.tensor([PROMPTS[0]])
    with torch.inference_mode(), hooks(model, record=["blocks.1.attn.hook_z",
                                                      "blocks.1.hook_attn_out"]) as base:
        model.hf_model(ids)
    iv = Intervention("blocks.1.attn.hook_z", vec, 2.0, head=2)
    with torch.inference_mode(), hooks(model, [iv], record=["blocks.1.attn.hook_z",
                                                            "blocks.1.hook_attn_out"]) as st:
        model.hf_model(ids)
    z0, z1 = base.records["blocks.1.attn.hook_z"][0], st.records["blocks.1.attn.hook_z"][0]
    torch.testing.assert_close(z1[:, :, 2] - z0[:, :, 2], (2.0 * vec).expand(1, 5, 16))
    assert torch.equal(z1[:, :, [0, 1, 3]], z0[:, :, [0, 1, 3]])
    w_o = site.module.weight  # [d_model, n_heads * d_head]
    expect = w_o[:, 32:48] @ (2.0 * vec)
    diff = st.records["blocks.1.hook_attn_out"][0] - base.records["blocks.1.hook_attn_out"][0]
    torch.testing.assert_close(diff, expect.expand_as(diff), atol=1e-5, rtol=1e-4)


def test_hooks__several_interventions_add_up():
    model = tiny_llama()
    a, b, c = (torch.randn(model.d_model) for _ in range(3))
    ivs = [Intervention("blocks.0.hook_resid_post", a, 1.5),
           Intervention("blocks.0.hook_resid_post", b, -0.5),
           Intervention("blocks.1.hook_mlp_out", c, 2.0)]
    ids = torch.tensor([PROMPTS[0]])
    names = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]
    with torch.inference_mode(), hooks(model, record=names) as base:
        model.hf_model(ids)
    # The MLP output of layer 1 also changes through layer 0's edit, so compare layer 0 exactly
    # and check layer 1's own edit by running layer-1-only.
    with torch.inference_mode(), hooks(model, ivs[:2], record=names) as st:
        model.hf_model(ids)
    d0 = st.records[names[0]][0] - base.records[names[0]][0]
    torch.testing.assert_close(d0, (1.5 * a - 0.5 * b).expand_as(d0), atol=1e-5, rtol=0)
    with torch.inference_mode(), hooks(model, ivs[2:], record=names) as st:
        model.hf_model(ids)
    d1 = st.records[names[1]][0] - base.records[names[1]][0]
    torch.testing.assert_close(d1, (2.0 * c).expand_as(d1), atol=1e-5, rtol=0)


def test_hooks__removed_even_when_the_body_raises():
    model = tiny_llama()
    iv = Intervention("blocks.0.hook_resid_post", torch.ones(model.d_model), 1.0)
    with pytest.raises(RuntimeError, match="boom"), hooks(model, [iv], record=["blocks.1.attn.hook_z"]):
        assert not _no_hooks_left(model)
        raise RuntimeError("boom")
    assert _no_hooks_left(model)


@pytest.mark.parametrize("make, fragment", [
    (lambda d: Intervention("blocks.9.hook_resid_post", torch.ones(d), 1.0), "valid: blocks.L"),
    (lambda d: Intervention("blocks.0.hook_nope", torch.ones(d), 1.0), "unknown"),
    (lambda d: Intervention("blocks.0.hook_resid_post", torch.ones(d + 1), 1.0), "has size"),
    (lambda d: Intervention("blocks.0.attn.hook_z", torch.ones(16), 1.0), "needs a head"),
    (lambda d: Intervention("blocks.0.attn.hook_z", torch.ones(16), 1.0, head=7), "0..3"),
    (lambda d: Intervention("blocks.0.hook_resid_post", torch.ones(d), 1.0, head=0), "not a per-head"),
])
def test_hooks__bad_interventions_fail_fast_naming_the_fix(make, fragment):
    model = tiny_llama()
    with pytest.raises(ConfigError, match=fragment), hooks(model, [make(model.d_model)]):
        pass
    assert _no_hooks_left(model)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_intervention__non_finite_magnitude_is_rejected(bad):
    with pytest.raises(ConfigError, match="finite"):
        Intervention("blocks.0.hook_resid_post", torch.ones(4), bad)


@pytest.mark.parametrize("name", ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_post",
                                  "blocks.0.hook_attn_out", "blocks.1.hook_mlp_out",
                                  "blocks.1.attn.hook_z"])
def test_resolve_hook__records_match_the_transformerlens_bridge(name):
    """Our hook placement on the plain HF model sees what TransformerLens names ``name``."""
    model = tiny_llama()
    ids = torch.tensor([PROMPTS[0]])
    with torch.inference_mode(), hooks(model, record=[name]) as state:
        model.hf_model(ids)
    _, cache = model.bridge.run_with_cache(ids, names_filter=lambda n: n == name)
    torch.testing.assert_close(state.records[name][0], cache[name], atol=1e-5, rtol=1e-4)
