"""Dictionary folders: our round trip, SAELens-written folders, feature directions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dictionaries.config import DictionaryConfig, DictionaryConfigError
from dictionaries.hub import feature_direction, load_dictionary
from dictionaries.io import read_cfg, save_dictionary
from dictionaries.saes import Dictionary
from tests.helpers import REPO

SAELENS_PYTHON = REPO / "benchmarks" / ".venv-saelens" / "bin" / "python"


def _random_dictionary(arch: str = "relu", d_in: int = 8, d_sae: int = 16) -> Dictionary:
    cfg = DictionaryConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=4, model_name="m",
                           hook_name="blocks.2.hook_resid_post", seed=3)
    sae = Dictionary(cfg)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2)
        sae.b_dec.normal_()
        if sae.threshold is not None:
            sae.threshold.uniform_(0, 0.3)
    return sae


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk"])
def test_save_dictionary__round_trip_keeps_weights_and_encoding(tmp_path, arch):
    sae = _random_dictionary(arch)
    sae.fold_activation_scale(2.5)
    save_dictionary(sae, tmp_path / "d")
    loaded = load_dictionary(tmp_path / "d")
    assert loaded.architecture == sae.architecture and loaded.cfg == sae.cfg
    assert loaded.activation_scale == pytest.approx(2.5)
    x = torch.randn(20, 8)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))
    torch.testing.assert_close(loaded(x), sae(x))


def test_save_dictionary__writes_saelens6_layout(tmp_path):
    save_dictionary(_random_dictionary("topk"), tmp_path / "d")
    cfg = read_cfg(tmp_path / "d")
    assert cfg["architecture"] == "topk" and cfg["k"] == 4
    assert (cfg["d_in"], cfg["d_sae"]) == (8, 16)
    assert cfg["normalize_activations"] == "none" and cfg["apply_b_dec_to_input"] is True
    assert cfg["metadata"]["hook_name"] == "blocks.2.hook_resid_post"
    assert cfg["metadata"]["model_name"] == "m"
    assert cfg["metadata"]["sae_lens_version"] >= "6"
    assert not list(tmp_path.glob("*.partial"))


def _write_like_saelens(folder: Path, cfg: dict, weights: dict[str, torch.Tensor]) -> None:
    """What SAELens 6.54 ``SAE.save_model`` writes: json.dump(cfg) and save_file(state_dict)."""
    folder.mkdir()
    save_file(weights, str(folder / "sae_weights.safetensors"))
    with open(folder / "cfg.json", "w") as fh:
        json.dump(cfg, fh)


SAELENS_STANDARD_CFG = {  # copied from a folder SAELens 6.54.12 wrote (StandardSAEConfig)
    "d_in": 8, "d_sae": 16, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
    "normalize_activations": "none", "reshape_activations": "none",
    "metadata": {"sae_lens_version": "6.54.12", "sae_lens_training_version": "6.54.12",
                 "model_name": "m", "hook_name": "blocks.2.hook_resid_post"},
    "architecture": "standard"}


def _weights(threshold: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    w = {"W_dec": torch.randn(16, 8, generator=g), "W_enc": torch.randn(8, 16, generator=g),
         "b_dec": torch.randn(8, generator=g), "b_enc": torch.randn(16, generator=g)}
    if threshold:
        w["threshold"] = torch.rand(16, generator=g)
    return w


def test_load_dictionary__reads_saelens_standard_folder(tmp_path):
    w = _weights()
    _write_like_saelens(tmp_path / "sl", SAELENS_STANDARD_CFG, w)
    sae = load_dictionary(tmp_path / "sl")
    assert sae.architecture == "relu" and sae.cfg.hook_name == "blocks.2.hook_resid_post"
    x = torch.randn(5, 8)
    expected = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])  # SAELens' encode
    torch.testing.assert_close(sae.encode(x), expected)
    torch.testing.assert_close(sae(x), expected @ w["W_dec"] + w["b_dec"])


def test_load_dictionary__reads_saelens_topk_and_jumprelu_folders(tmp_path):
    topk_cfg = {**SAELENS_STANDARD_CFG, "k": 4, "rescale_acts_by_decoder_norm": False,
                "architecture": "topk"}
    w = _weights()
    _write_like_saelens(tmp_path / "topk", topk_cfg, w)
    x = torch.randn(5, 8)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    f = load_dictionary(tmp_path / "topk").encode(x)
    assert ((f > 0).sum(dim=1) <= 4).all()
    top = pre.topk(4, dim=1)
    torch.testing.assert_close(f.gather(1, top.indices), torch.relu(top.values))

    wj = _weights(threshold=True)
    _write_like_saelens(tmp_path / "jr", {**SAELENS_STANDARD_CFG, "architecture": "jumprelu"}, wj)
    pre = (x - wj["b_dec"]) @ wj["W_enc"] + wj["b_enc"]
    expected = torch.relu(pre) * (pre > wj["threshold"])
    torch.testing.assert_close(load_dictionary(tmp_path / "jr").encode(x), expected)


def test_load_dictionary__reads_pre_6_flat_layout(tmp_path):
    old = {"d_in": 8, "d_sae": 16, "model_name": "gpt2", "hook_point": "blocks.8.hook_resid_pre",
           "hook_point_layer": 8, "activation_fn_str": "relu", "apply_b_dec_to_input": True,
           "normalize_activations": False, "dtype": "float32", "device": "cpu",
           "context_size": 128}
    _write_like_saelens(tmp_path / "old", old, _weights())
    sae = load_dictionary(tmp_path / "old")
    assert sae.architecture == "relu" and sae.cfg.hook_name == "blocks.8.hook_resid_pre"
    assert sae.cfg.model_name == "gpt2"


def test_load_dictionary__rejects_unfolded_normalisation_and_bad_folders(tmp_path):
    _write_like_saelens(tmp_path / "n", {**SAELENS_STANDARD_CFG,
                                         "normalize_activations": "expected_average_only_in"},
                        _weights())
    with pytest.raises(DictionaryConfigError, match="normalize_activations"):
        load_dictionary(tmp_path / "n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DictionaryConfigError, match="cfg.json"):
        load_dictionary(tmp_path / "empty")
    bad = _weights()
    bad["W_enc"] = torch.zeros(8, 15)
    _write_like_saelens(tmp_path / "shape", SAELENS_STANDARD_CFG, bad)
    with pytest.raises(DictionaryConfigError, match="W_enc"):
        load_dictionary(tmp_path / "shape")


def test_feature_direction__unit_norm_in_true_units(tmp_path):
    sae = _random_dictionary()
    row = sae.W_dec[5].detach().clone()
    sae.fold_activation_scale(4.0)  # trained on 4x inputs: stored rows shrink 4x
    save_dictionary(sae, tmp_path / "d")
    direction = feature_direction(tmp_path / "d", 5)
    assert direction.shape == (8,)
    torch.testing.assert_close(direction, row / row.norm())
    with pytest.raises(DictionaryConfigError, match="out of range"):
        feature_direction(tmp_path / "d", 16)


@pytest.mark.skipif(not SAELENS_PYTHON.exists(),
                    reason="SAELens venv not built (python benchmarks/dictionary_training.py)")
def test_saelens__loads_our_folders(tmp_path):
    for arch in ("relu", "topk", "batchtopk"):
        sae = _random_dictionary(arch)
        save_dictionary(sae, tmp_path / arch)
        x = torch.randn(6, 8)
        save_file({"x": x, "f": sae.encode(x).detach()}, str(tmp_path / f"{arch}.safetensors"))
    script = (
        "import sys, torch\nfrom safetensors.torch import load_file\nfrom sae_lens import SAE\n"
        "for arch in ('relu', 'topk', 'batchtopk'):\n"
        "    sae = SAE.load_from_disk(sys.argv[1] + '/' + arch)\n"
        "    t = load_file(sys.argv[1] + f'/{arch}.safetensors')\n"
        "    torch.testing.assert_close(sae.encode(t['x']), t['f'])\n"
        "print('ok')\n")
    out = subprocess.run([str(SAELENS_PYTHON), "-c", script, str(tmp_path)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
