import math

import pytest
import torch

from harness.directions import random_direction
from harness.sideeffects import (
    kl_divergence,
    load_reference_text,
    next_token_ce,
    reference_set,
    side_effects,
)
from harness.steering import Intervention
from tests.helpers import embedded_model, tiny_llama


def test_kl_and_ce__hand_computed():
    base = torch.tensor([[0.5, 0.5]]).log()
    other = torch.tensor([[0.9, 0.1]]).log()
    # 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1)
    assert float(kl_divergence(base, other)[0]) == pytest.approx(0.510826, abs=1e-6)
    assert float(kl_divergence(base, base)[0]) == 0.0
    assert float(next_token_ce(other, torch.tensor([1]))[0]) == pytest.approx(-math.log(0.1))


def test_load_reference_text__packaged_default_and_errors(tmp_path):
    lines = load_reference_text()
    assert len(lines) >= 30 and all(line.strip() == line and line for line in lines)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(Exception, match="no text"):
        load_reference_text(empty)


def test_side_effects__zero_at_magnitude_zero_and_kl_grows_tiny_model():
    model = tiny_llama()
    ref = reference_set(model, load_reference_text()[:6])
    vec = random_direction(0, model.d_model)
    results = [side_effects(model, ref, [Intervention("blocks.1.hook_resid_pre", vec, m)])
               for m in (0.0, 0.5, 2.0, 8.0)]
    assert results[0]["kl"] == 0.0 and results[0]["ce"] == pytest.approx(ref.base_ce)
    kls = [r["kl"] for r in results]
    assert kls == sorted(kls) and kls[1] > 0
    # a generation-only intervention is measured at every position (the worst case)
    gen_only = side_effects(model, ref, [Intervention("blocks.1.hook_resid_pre", vec, 2.0,
                                                      positions="generated")])
    assert gen_only["kl"] == pytest.approx(results[2]["kl"])


@pytest.mark.slow
def test_side_effects__ce_and_kl_grow_with_magnitude_on_the_embedded_model():
    """On a trained model, pushing the residual stream off its path costs next-token loss."""
    model = embedded_model()
    ref = reference_set(model, load_reference_text()[:4])
    vec = random_direction(1, model.d_model)
    results = [side_effects(model, ref, [Intervention("blocks.10.hook_resid_post", vec, m)])
               for m in (0.0, 10.0, 40.0)]
    assert results[0]["kl"] == 0.0 and results[0]["ce_increase"] == 0.0
    assert 0 < results[1]["kl"] < results[2]["kl"]
    assert 0 < results[1]["ce_increase"] < results[2]["ce_increase"]
