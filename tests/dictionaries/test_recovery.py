"""The trainer recovers planted features with default settings, through the CLI."""

from __future__ import annotations

from dictionaries.activations import save_activations
from dictionaries.config import DictionaryConfig
from dictionaries.hub import load_dictionary
from dictionaries.metrics import max_cosines
from dictionaries.saes import Dictionary
from harness.cli import main
from tests.helpers import sparse_feature_activations


def test_cli_dict_train__default_2x_relu_recovers_planted_features(tmp_path):
    directions, x = sparse_feature_activations(d_in=32, n_features=48, n=60_000, seed=5)
    # the untrained dictionary must not already contain the planted directions
    untrained = Dictionary(DictionaryConfig.from_expansion(32, 2)).W_dec.detach()
    assert float(max_cosines(directions, untrained).mean()) < 0.6
    save_activations(tmp_path / "acts.safetensors", x)
    code = main(["dict", "train", "--activations", str(tmp_path / "acts.safetensors"),
                 "--expansion", "2", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    sae = load_dictionary(tmp_path / "out")  # one dictionary: written at --out
    assert sae.d_sae == 64
    best = max_cosines(directions, sae.W_dec.detach())
    assert float(best.mean()) >= 0.9, best
