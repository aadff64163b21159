"""Direction SPECs and std scaling."""

from __future__ import annotations

import pytest
import torch

from harness.config import ConfigError
from harness.directions import (
    Direction,
    projection_std,
    random_direction,
    resolve_direction,
    to_interventions,
)
from harness.steering import hooks
from tests.helpers import tiny_llama


def test_random_direction__seeded_unit_vector():
    a, b = random_direction(3, 64), random_direction(3, 64)
    assert torch.equal(a, b) and abs(a.norm().item() - 1) < 1e-6
    assert not torch.equal(a, random_direction(4, 64))


def test_projection_std__equals_the_std_of_recorded_projections():
    model = tiny_llama()
    prompts = [[1, 520, 2361, 314, 1175], [1, 8181, 2361]]
    d = Direction("blocks.1.hook_resid_post", random_direction(0, model.d_model))
    got = projection_std(model, d, prompts)
    values = []
    for p in prompts:  # one prompt at a time: no padding at all
        with torch.inference_mode(), hooks(model, record=[d.hook]) as st:
            model.hf_model(torch.tensor([p]))
        values.append(st.records[d.hook][0][0, 1:] @ d.vector)
    assert got == pytest.approx(torch.cat(values).std().item(), rel=1e-4)


def test_to_interventions__std_scale_multiplies_magnitude():
    d = Direction("blocks.0.hook_resid_post", torch.ones(4) / 2, std=3.0, label="x")
    (iv,) = to_interventions([d], 2.0, scale="std")
    assert iv.magnitude == 6.0
    with pytest.raises(ConfigError, match="no std"):
        to_interventions([Direction("blocks.0.hook_resid_post", torch.ones(4))], 1.0, scale="std")


def test_resolve_direction__checks_width_against_the_hook():
    model = tiny_llama()
    (d,) = resolve_direction("random:1", model, "blocks.0.attn.hook_z", head=1)
    assert d.vector.numel() == 16 and d.head == 1
    with pytest.raises(ConfigError, match="expected random:SEED"):
        resolve_direction("random:x", model, "blocks.0.hook_resid_post")


def test_resolve_direction__hub_dictionaries_as_feature_specs_offline(tmp_path, monkeypatch):
    """A SAELens folder and a Gemma Scope params.npz in a local hub cache (offline): feature:REF:ID
    is the unit-norm decoder row, at the hook the dictionary records or implies."""
    from dictionaries.config import DictionaryConfig, DictionaryConfigError
    from dictionaries.saes import Dictionary
    from harness.directions.spec import parse_spec
    from harness.sweep.grid import feature_hook
    from tests.dictionaries.hubcache import gemma_scope_repo, random_gemma_arrays, saelens_repo

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_llama()  # d_model 64
    sae = Dictionary(DictionaryConfig(d_in=64, d_sae=96, hook_name="blocks.1.hook_resid_post"))
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 3.0, 96)[:, None])
    saelens_repo(cache, sae, "someone/tiny-saes", "l1/res", tmp_path)
    arrays = random_gemma_arrays(64, 80)
    gemma_scope_repo(cache, arrays, "google/gemma-scope-2b-pt-mlp",
                     "layer_0/width_16k/average_l0_7", tmp_path)
    cases = [("feature:hf://someone/tiny-saes/l1/res:17", "blocks.1.hook_resid_post",
              sae.W_dec[17].detach()),
             ("feature:hf://google/gemma-scope-2b-pt-mlp/layer_0/width_16k/average_l0_7:41",
              "blocks.0.hook_mlp_out", torch.from_numpy(arrays["W_dec"][41]))]
    for spec, hook, row in cases:
        assert feature_hook(parse_spec(spec)) == hook
        (d,) = resolve_direction(spec, model, hook)
        assert d.hook == hook and d.label == spec
        torch.testing.assert_close(d.vector, row / row.norm())
        assert abs(float(d.vector.norm()) - 1) < 1e-6 and float(row.norm()) != 1
    with pytest.raises(DictionaryConfigError, match="not in the hub cache"):
        resolve_direction("feature:hf://someone/absent/x:1", model, "blocks.1.hook_resid_post")
