"""The dictionary module: encodings by hand, scale folding, initialisation."""

from __future__ import annotations

import torch

from dictionaries.config import DictionaryConfig
from dictionaries.metrics import mmcs
from dictionaries.saes import Dictionary


def test_dictionary__different_sizes_start_from_unrelated_directions():
    # If a 2x dictionary started with the 1x one's rows, MMCS between sizes would measure
    # the shared initialisation rather than what training found.
    small = Dictionary(DictionaryConfig(d_in=64, d_sae=64)).W_dec.detach()
    large = Dictionary(DictionaryConfig(d_in=64, d_sae=128)).W_dec.detach()
    assert mmcs(small, large) < 0.6
    again = Dictionary(DictionaryConfig(d_in=64, d_sae=64)).W_dec.detach()
    assert torch.equal(small, again)  # still deterministic


def test_dictionary__encode_decode_by_hand_and_fold_keeps_features():
    sae = Dictionary(DictionaryConfig(d_in=4, d_sae=6, seed=2))
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(5, 4)
    f = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    torch.testing.assert_close(sae.encode(x), f)
    torch.testing.assert_close(sae(x), f @ sae.W_dec + sae.b_dec)
    x_hat_scaled = sae(x * 3.0)
    sae.fold_activation_scale(3.0)  # now takes unscaled inputs
    torch.testing.assert_close(sae.encode(x), f.detach() * 0 + sae.encode(x))
    torch.testing.assert_close(sae(x), x_hat_scaled / 3.0)
    assert sae.activation_scale == 3.0


def test_dictionary__jumprelu_zeroes_at_or_below_threshold_and_cannot_be_trained():
    import pytest

    from dictionaries.config import DictionaryConfigError, TrainConfig
    from dictionaries.trainer import DictionaryTrainer

    cfg = DictionaryConfig(d_in=3, d_sae=4, architecture="jumprelu")
    sae = Dictionary(cfg, apply_b_dec_to_input=False)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0, 0, -1], [0, 1, 0, 0], [0, 0, 1, 0]]))
        sae.b_enc.zero_()
        sae.b_dec.fill_(5.0)  # not subtracted (Gemma Scope)
        sae.threshold.copy_(torch.tensor([0.5, 0.5, 0.25, 0.0]))
    x = torch.tensor([[0.5, 0.75, 0.25], [-2.0, 0.5, 1.0]])
    # pre = [[0.5, 0.75, 0.25, -0.5], [-2, 0.5, 1, 2]]: ties (0.5 at 0.5, 0.25 at 0.25) are zero
    expected = torch.tensor([[0.0, 0.75, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]])
    assert torch.equal(sae.encode(x), expected)
    with pytest.raises(DictionaryConfigError, match="JumpReLU is for loading published"):
        DictionaryTrainer(cfg, TrainConfig())
