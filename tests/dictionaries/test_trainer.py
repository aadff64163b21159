"""Trainer mechanics: schedules, input scaling, resampling, AuxK, several dictionaries."""

from __future__ import annotations

import math

import pytest
import torch

from dictionaries.activations import tensor_batches
from dictionaries.config import DictionaryConfig, TrainConfig
from dictionaries.metrics import fvu
from dictionaries.trainer import DictionaryTrainer, estimate_scale, train
from tests.helpers import sparse_feature_activations


def test_schedules__lr_warmup_and_decay_and_l1_warmup_by_hand():
    tcfg = TrainConfig(n_tokens=100 * 10, batch_size=10, lr=1.0, lr_warmup_steps=10,
                       lr_decay_fraction=0.2, l1_warmup_fraction=0.05)
    tr = DictionaryTrainer(DictionaryConfig(d_in=4, d_sae=8, l1_coefficient=2.0), tcfg)
    assert [tr.lr_at(s) for s in (0, 4, 9, 50, 80, 90, 99)] == pytest.approx(
        [0.1, 0.5, 1.0, 1.0, 1.0, 0.5, 0.05])
    assert [tr.l1_at(s) for s in (0, 2, 4, 60)] == pytest.approx([0.4, 1.2, 2.0, 2.0])


def test_train__scales_inputs_and_folds_scale_into_saved_units():
    _, x = sparse_feature_activations(d_in=16, n_features=24, n=8192, seed=2)
    x = x * 37.0 + 5.0  # arbitrary units: the trainer must not care
    cfgs = [DictionaryConfig(d_in=16, d_sae=32, seed=0), DictionaryConfig(d_in=16, d_sae=64)]
    out = train(cfgs, tensor_batches(x, 512), TrainConfig(n_tokens=512 * 150, batch_size=512),
                progress=False)
    first = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:16384]]
    expected_scale = math.sqrt(16) / float(first.norm(dim=1).mean())
    for td in out:
        assert td.activation_scale == pytest.approx(expected_scale, rel=1e-5)
        assert td.sae.activation_scale == pytest.approx(expected_scale, rel=1e-5)
        with torch.no_grad():
            assert fvu(x, td.sae(x)) < 0.5  # reconstructions come out in the input's units
    assert [td.sae.d_sae for td in out] == [32, 64]


def test_estimate_scale__average_norm_becomes_sqrt_d():
    x = torch.randn(1000, 9) * 3
    s = estimate_scale(x)
    assert float((x * s).norm(dim=1).mean()) == pytest.approx(3.0)


def test_resample__points_dead_features_at_badly_reconstructed_inputs():
    _, x = sparse_feature_activations(d_in=16, n_features=24, n=4096, seed=3)
    tcfg = TrainConfig(n_tokens=256 * 20, batch_size=256, dead_after_tokens=512,
                       resample_every=4, resample_until=1.0)
    tr = DictionaryTrainer(DictionaryConfig(d_in=16, d_sae=32), tcfg)
    with torch.no_grad():
        tr.sae.b_enc[:6] = -1e4  # these six can never fire
    tr.initialize(x[:1024])
    before = tr.sae.W_dec[:6].detach().clone()
    batches = tensor_batches(x, 256)
    resampled = sum(tr.update(step, next(batches))["resampled"] for step in range(9))
    assert resampled >= 6 and tr.n_resampled == resampled
    assert (tr.sae.b_enc[:6] > -1.0).all()  # reset to zero, then trained
    moved = 1 - (tr.sae.W_dec[:6].detach() * before).sum(dim=1).abs()
    assert (moved > 1e-3).all()
    torch.testing.assert_close(tr.sae.W_dec.detach().norm(dim=1), torch.ones(32))


@pytest.mark.parametrize("aux", [0.0, 1 / 32])
def test_auxk__trains_dead_features_only_when_enabled(aux):
    _, x = sparse_feature_activations(d_in=16, n_features=24, n=2048, seed=4)
    tcfg = TrainConfig(n_tokens=256 * 10, batch_size=256, dead_after_tokens=256)
    tr = DictionaryTrainer(DictionaryConfig(d_in=16, d_sae=32, architecture="topk", k=2,
                                            aux_k_coefficient=aux), tcfg)
    tr.initialize(x[:512])
    with torch.no_grad():  # features 0-7: small positive pre-activations, never in the top 2
        tr.sae.W_enc[:, :8] *= 0.001
        tr.sae.b_enc[:8] = 0.05
        tr.sae.b_enc[8:] = 2.0
    tr.tokens_since_fired[:8] = 10**6  # ... and already dead
    before = tr.sae.W_enc.detach()[:, :8].clone()
    row = tr.update(0, next(tensor_batches(x, 256)))
    assert bool((tr.tokens_since_fired[:8] > 0).all())  # still not firing in the top k
    changed = (tr.sae.W_enc.detach()[:, :8] - before).abs().amax(dim=0) > 0
    if aux:
        assert row["aux_loss"] > 0 and bool(changed.all())
    else:
        assert row["aux_loss"] == 0 and not bool(changed.any())
