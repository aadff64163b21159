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
