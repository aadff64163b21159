"""Config validation names the bad field."""

from __future__ import annotations

import pytest

from dictionaries.config import (
    ActivationConfig,
    DictionaryConfig,
    DictionaryConfigError,
    TrainConfig,
    from_dict,
    to_dict,
)


@pytest.mark.parametrize("kwargs, match", [
    ({"d_in": 0, "d_sae": 4}, "d_in"),
    ({"d_in": 4, "d_sae": 8, "architecture": "gated"}, "architecture"),
    ({"d_in": 4, "d_sae": 8, "l1_coefficient": -1.0}, "l1_coefficient"),
    ({"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 9}, "k=9"),
])
def test_dictionary_config__rejects_bad_values(kwargs, match):
    with pytest.raises(DictionaryConfigError, match=match):
        DictionaryConfig(**kwargs)


def test_dictionary_config__from_expansion_and_round_trip():
    cfg = DictionaryConfig.from_expansion(576, 4, architecture="topk")
    assert cfg.d_sae == 2304 and cfg.expansion == 4
    assert from_dict(DictionaryConfig, to_dict(cfg)) == cfg
    with pytest.raises(DictionaryConfigError, match="unknown key"):
        from_dict(DictionaryConfig, {**to_dict(cfg), "bogus": 1})


@pytest.mark.parametrize("kwargs, match", [
    ({"n_tokens": 0}, "n_tokens"), ({"lr": 0.0}, "lr"), ({"lr_decay_fraction": 1.5}, "decay"),
    ({"adam_betas": (0.9, 1.0)}, "adam_betas"),
])
def test_train_config__rejects_bad_values(kwargs, match):
    with pytest.raises(DictionaryConfigError, match=match):
        TrainConfig(**kwargs)


def test_train_config__round_trips_through_json_lists():
    cfg = TrainConfig(n_tokens=1000, batch_size=100)
    assert cfg.n_steps == 10
    data = to_dict(cfg)
    data["adam_betas"] = list(data["adam_betas"])  # as JSON gives it back
    assert from_dict(TrainConfig, data) == cfg


def test_activation_config__needs_room_for_bos():
    with pytest.raises(DictionaryConfigError, match="context_size"):
        ActivationConfig(hook_name="blocks.0.hook_resid_post", context_size=1)


def test_train_config__default_lr_scales_with_width():
    assert TrainConfig().lr_for(576) == pytest.approx(0.05 / 24)
    assert TrainConfig(lr=1e-3).lr_for(576) == 1e-3
