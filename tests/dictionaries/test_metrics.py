"""Pure metric functions against hand-computed values and planted cases."""

from __future__ import annotations

import pytest
import torch

from dictionaries import metrics


def test_mmcs_both_ways__identical_permuted_and_orthogonal_dictionaries():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 16, generator=g)
    same = metrics.mmcs_both_ways(a, a.clone())
    assert same["a_in_b"] == pytest.approx(1.0) and same["b_in_a"] == pytest.approx(1.0)
    permuted = a[torch.randperm(40, generator=g)] * 3.0  # order and scale do not matter
    both = metrics.mmcs_both_ways(a, permuted)
    assert both["a_in_b"] == pytest.approx(1.0) and both["b_in_a"] == pytest.approx(1.0)
    # rows of a live in the first 8 coordinates, rows of b in the last 8: all cosines are 0
    left = torch.cat([torch.randn(30, 8, generator=g), torch.zeros(30, 8)], dim=1)
    right = torch.cat([torch.zeros(50, 8), torch.randn(50, 8, generator=g)], dim=1)
    ortho = metrics.mmcs_both_ways(left, right)
    assert ortho["a_in_b"] == pytest.approx(0.0, abs=1e-12)
    assert ortho["b_in_a"] == pytest.approx(0.0, abs=1e-12)


def test_mmcs__is_asymmetric_for_a_subset():
    eye = torch.eye(6)
    # b holds a's 3 directions plus 3 others: b covers a fully, a covers half of b
    a, b = eye[:3], torch.cat([eye[:3], eye[3:] + 0.0])
    both = metrics.mmcs_both_ways(a, b)
    assert both["a_in_b"] == pytest.approx(1.0)
    assert both["b_in_a"] == pytest.approx(0.5)


def test_fvu_mse_l0_dead__hand_computed():
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    x_hat = torch.tensor([[1.0, 1.0], [3.0, 2.0]])
    # mean row (2, 1); total variance = (1+1) + (1+1) = 4; residual = 1
    assert metrics.fvu(x, x_hat) == pytest.approx(0.25)
    assert metrics.mse(x, x_hat) == pytest.approx(0.25)
    f = torch.tensor([[0.0, 2.0, 0.0], [1.0, 3.0, 0.0]])
    assert metrics.l0(f) == pytest.approx(1.5)
    assert metrics.dead_fraction(metrics.fire_counts(f)) == pytest.approx(1 / 3)


def test_loss_recovered__endpoints_and_midpoint():
    assert metrics.loss_recovered(clean=2.0, spliced=2.0, zero=6.0) == pytest.approx(1.0)
    assert metrics.loss_recovered(clean=2.0, spliced=6.0, zero=6.0) == pytest.approx(0.0)
    assert metrics.loss_recovered(clean=2.0, spliced=3.0, zero=6.0) == pytest.approx(0.75)
