"""Hand-written gradients agree with autograd on the same losses."""

from __future__ import annotations

import pytest
import torch

from dictionaries.config import DictionaryConfig
from dictionaries.saes import Dictionary
from dictionaries.steps import compute_grads, remove_parallel_grad


def _autograd_loss(sae: Dictionary, x, l1, dead, k):
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    if sae.architecture == "relu":
        f = torch.relu(pre)
    elif sae.architecture == "topk":
        top = pre.topk(k, -1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    else:
        flat = torch.relu(pre).flatten()
        top = flat.topk(k * x.shape[0])
        f = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(pre)
    x_hat = f @ sae.W_dec + sae.b_dec
    loss = (x_hat - x).pow(2).sum(1).mean()
    if sae.architecture == "relu":
        return loss + l1 * (f * sae.W_dec.norm(dim=1)).sum(1).mean()
    residual = (x - x_hat).detach()
    half = sae.d_in // 2
    k_aux, scale = min(half, int(dead.sum())), min(1.0, int(dead.sum()) / half)
    top = pre.masked_fill(~dead, float("-inf")).topk(k_aux, -1)
    f_aux = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    aux = ((f_aux @ sae.W_dec) - residual).pow(2).sum(1).mean()
    return loss + sae.cfg.aux_k_coefficient * scale * aux


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk"])
def test_compute_grads__match_autograd(arch):
    torch.manual_seed(0)
    cfg = DictionaryConfig(d_in=8, d_sae=24, architecture=arch, k=3, aux_k_coefficient=0.5)
    sae = Dictionary(cfg).double()
    with torch.no_grad():  # non-unit decoder norms and non-zero biases exercise every term
        sae.W_dec.mul_(torch.rand(24, 1, dtype=torch.double) + 0.5)
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.3)
    x = torch.randn(16, 8, dtype=torch.double)
    dead = torch.zeros(24, dtype=torch.bool)
    dead[::3] = True
    result = compute_grads(sae, x, 0.7, dead)
    mine = {name: p.grad.clone() for name, p in sae.named_parameters() if p.grad is not None}
    for p in sae.parameters():
        p.grad = None
    loss = _autograd_loss(sae, x, 0.7, dead, 3)
    loss.backward()
    total = result.mse + 0.7 * result.sparsity + result.aux
    assert total == pytest.approx(float(loss.detach()), rel=1e-12)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(mine[name], getattr(sae, name).grad, rtol=1e-10, atol=1e-12)


def test_remove_parallel_grad__leaves_only_orthogonal_part():
    sae = Dictionary(DictionaryConfig(d_in=6, d_sae=10))
    sae.W_dec.grad = torch.randn(10, 6)
    remove_parallel_grad(sae)
    dots = (sae.W_dec.grad * sae.W_dec.detach()).sum(dim=1)
    torch.testing.assert_close(dots, torch.zeros(10), atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk"])
def test_compute_grads__sparse_path_equals_dense_path(arch):
    torch.manual_seed(1)
    sae = Dictionary(DictionaryConfig(d_in=12, d_sae=40, architecture=arch, k=2)).double()
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(40, 1, dtype=torch.double) + 0.5)
        sae.b_dec.normal_()
        sae.b_enc.normal_(-1.0, 0.3)  # sparse activations, as after training
    x = torch.randn(32, 12, dtype=torch.double)
    dense = compute_grads(sae, x, 0.3, None, sparse=False)
    grads = {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}
    sparse = compute_grads(sae, x, 0.3, None, sparse=True)
    assert sparse.mse == pytest.approx(dense.mse) and sparse.l0 == dense.l0
    assert sparse.sparsity == pytest.approx(dense.sparsity)
    assert torch.equal(sparse.fired, dense.fired)
    for name, g in grads.items():
        torch.testing.assert_close(getattr(sae, name).grad, g, rtol=1e-10, atol=1e-12)
