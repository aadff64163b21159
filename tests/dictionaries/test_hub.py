"""Published dictionaries through huggingface_hub, from a local cache laid out as the hub client
lays it out; the network is never used (HF_HUB_OFFLINE=1, or a closed local endpoint)."""

from __future__ import annotations

import socket
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from dictionaries import hub
from dictionaries.config import DictionaryConfig, DictionaryConfigError
from dictionaries.hub import (dictionary_hook, feature_direction, infer_hook, infer_model,
                              is_dictionary_ref, load_dictionary, parse_ref)
from dictionaries.io import CFG_FILE, WEIGHTS_FILE, save_dictionary
from dictionaries.saes import Dictionary
from tests.dictionaries.hubcache import write_hub_repo

HOOK = "blocks.2.hook_resid_post"
SAE_PATH = "saes/" + HOOK


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty hub cache named by the environment, offline."""
    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def _trained_like(arch: str = "batchtopk") -> Dictionary:
    sae = Dictionary(DictionaryConfig(d_in=8, d_sae=16, architecture=arch, k=4, model_name="m",
                                      hook_name=HOOK, seed=5))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2)
        sae.b_dec.normal_()
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, 16)[:, None])  # rows of different norms
        if sae.threshold is not None:
            sae.threshold.uniform_(0.05, 0.3)
    return sae


def _saelens_repo(cache: Path, tmp_path: Path, sae: Dictionary, repo: str = "someone/tiny-saes"
                  ) -> str:
    folder = save_dictionary(sae, tmp_path / "local")
    return write_hub_repo(cache, repo, {f"{SAE_PATH}/{CFG_FILE}": folder / CFG_FILE,
                                        f"{SAE_PATH}/{WEIGHTS_FILE}": folder / WEIGHTS_FILE,
                                        "README.md": b"tiny dictionaries\n"})


def _gemma_params(d_in: int = 6, d_sae: int = 10) -> dict[str, np.ndarray]:
    """Integer-valued weights: every pre-activation is exact in float32, so thresholds can be
    planted exactly at some of them."""
    rng = np.random.default_rng(0)
    return {"W_enc": rng.integers(-2, 3, (d_in, d_sae)).astype(np.float32),
            "W_dec": rng.integers(-3, 4, (d_sae, d_in)).astype(np.float32) + 0.5,
            "b_enc": rng.integers(-2, 3, d_sae).astype(np.float32),
            "b_dec": rng.integers(5, 9, d_in).astype(np.float32),  # must NOT be subtracted
            "threshold": np.zeros(d_sae, dtype=np.float32)}


def _npz_bytes(tmp_path: Path, arrays: dict[str, np.ndarray], **kw) -> bytes:
    file = tmp_path / "params.npz"
    np.savez(file, **arrays, **kw)
    return file.read_bytes()


def test_write_hub_repo__huggingface_hub_reads_the_layout(tmp_path):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    commit = write_hub_repo(tmp_path, "o/r", {"a/b.txt": b"x", "c.txt": b"yy"})
    info = scan_cache_dir(tmp_path)
    (repo,) = info.repos
    assert repo.repo_id == "o/r" and repo.repo_type == "model" and info.warnings == []
    (rev,) = repo.revisions
    assert rev.commit_hash == commit and rev.refs == frozenset({"main"})
    assert sorted(f.file_name for f in rev.files) == ["b.txt", "c.txt"]
    assert Path(try_to_load_from_cache("o/r", "a/b.txt", cache_dir=tmp_path)).read_bytes() == b"x"


def test_load_dictionary__saelens_folder_from_offline_cache(cache, tmp_path):
    sae = _trained_like("batchtopk")
    commit = _saelens_repo(cache, tmp_path, sae)
    x = torch.randn(7, 8)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    expected = torch.relu(pre) * (pre > sae.threshold)
    assert 0 < (expected > 0).sum() < expected.numel()  # the threshold zeroes some, keeps some
    for ref in (f"hf://someone/tiny-saes/{SAE_PATH}", f"hf://someone/tiny-saes@main/{SAE_PATH}",
                f"hf://someone/tiny-saes@{commit}/{SAE_PATH}/",
                f"hf://someone/tiny-saes/{SAE_PATH}/{CFG_FILE}"):
        got = load_dictionary(ref)
        assert type(got) is Dictionary and got.cfg.hook_name == HOOK
        torch.testing.assert_close(got.encode(x), expected.detach())
        assert torch.equal(got.W_dec, sae.W_dec.detach())
        assert dictionary_hook(ref) == HOOK
    row = feature_direction(f"hf://someone/tiny-saes/{SAE_PATH}", 3)
    torch.testing.assert_close(row, sae.W_dec[3].detach() / sae.W_dec[3].detach().norm())
    assert abs(float(row.norm()) - 1) < 1e-6
    half = load_dictionary(f"hf://someone/tiny-saes/{SAE_PATH}", dtype=torch.float64)
    assert half.W_enc.dtype == torch.float64


def test_load_dictionary__gemma_scope_params_npz_is_jumprelu_with_threshold(cache, tmp_path):
    p = _gemma_params()
    x = np.array([[1, 0, -1, 2, 1, 0], [0, 2, 1, -1, 0, 1], [3, -1, 0, 0, 2, -2]], np.float32)
    pre = x.astype(np.int64) @ p["W_enc"].astype(np.int64) + p["b_enc"].astype(np.int64)
    # thresholds exactly at row 0's positive pre-activations (ties: must be zeroed), else 0.5
    tie = pre[0] > 0
    p["threshold"] = np.where(tie, pre[0], 0.5).astype(np.float32)
    npz = _npz_bytes(tmp_path, p)
    write_hub_repo(cache, "google/gemma-scope-2b-pt-res",
                   {"layer_3/width_16k/average_l0_5/params.npz": npz})
    for ref in ("hf://google/gemma-scope-2b-pt-res/layer_3/width_16k/average_l0_5",
                "hf://google/gemma-scope-2b-pt-res/layer_3/width_16k/average_l0_5/params.npz"):
        sae = load_dictionary(ref)
        assert type(sae) is Dictionary and sae.architecture == "jumprelu"
        assert not sae.apply_b_dec_to_input
        assert sae.cfg.hook_name == "blocks.3.hook_resid_post"
        assert sae.cfg.model_name == "google/gemma-2-2b"
        f = sae.encode(torch.from_numpy(x)).detach().numpy()
        hand = np.where(pre > p["threshold"], np.maximum(pre, 0), 0)
        assert np.array_equal(f, hand.astype(np.float32))
        assert tie.sum() >= 2 and (f[0] == 0).all()  # ties are zeroed (ReLU would keep them)
        assert (f[1:] > 0).sum() >= 3 and ((f == 0) & (pre > 0)).sum() > tie.sum()
        assert np.array_equal(sae.W_dec.detach().numpy(), p["W_dec"])
        row = feature_direction(ref, 4).detach().numpy()
        np.testing.assert_allclose(row, p["W_dec"][4] / np.linalg.norm(p["W_dec"][4]), rtol=1e-6)
        assert dictionary_hook(ref) == "blocks.3.hook_resid_post"
    # the hook can be given (a repo whose name says nothing about the site)
    write_hub_repo(cache, "me/mirror", {"l7/params.npz": npz})
    assert load_dictionary("hf://me/mirror/l7").cfg.hook_name == ""
    given = load_dictionary("hf://me/mirror/l7", hook_name="blocks.7.hook_mlp_out")
    assert given.cfg.hook_name == "blocks.7.hook_mlp_out"


def test_load_npz__never_unpickles(cache, tmp_path):
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    arrays = _gemma_params()
    arrays["threshold"] = np.array([Boom()] * 10, dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)
    write_hub_repo(cache, "google/gemma-scope-2b-pt-res",
                   {"layer_1/params.npz": (tmp_path / "evil.npz").read_bytes()})
    with pytest.raises(DictionaryConfigError, match="plain arrays") as err:
        load_dictionary("hf://google/gemma-scope-2b-pt-res/layer_1")
    assert not marker.exists() and "\n" not in str(err.value)


def test_load_dictionary__missing_repo_offline_is_one_line_naming_ref_and_fix(cache):
    ref = "hf://nobody/not-cached/layer_1/width_16k/average_l0_9"
    with pytest.raises(DictionaryConfigError) as err:
        load_dictionary(ref)
    msg = str(err.value)
    assert "\n" not in msg and ref in msg and "offline" in msg
    assert "hf download nobody/not-cached --include 'layer_1/width_16k/average_l0_9/*'" in msg
    assert "HF_HUB_CACHE" in msg and str(cache) in msg
    # a cached repo without that path says the same
    write_hub_repo(cache, "nobody/other", {"x/params.npz": b"?"})
    with pytest.raises(DictionaryConfigError, match="not in the hub cache"):
        load_dictionary("hf://nobody/other/y")


def test_load_dictionary__unreachable_hub_falls_back_to_the_cache(cache, tmp_path, monkeypatch):
    from huggingface_hub import constants

    sae = _trained_like("relu")
    _saelens_repo(cache, tmp_path, sae)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(hub, "_REACHABLE", {})
    assert not hub.hub_reachable()
    got = load_dictionary(f"hf://someone/tiny-saes/{SAE_PATH}")
    assert torch.equal(got.W_enc, sae.W_enc.detach())
    with pytest.raises(DictionaryConfigError, match="hub is offline"):
        load_dictionary("hf://someone/tiny-saes/elsewhere")
    # the probe passes (a local server accepts) but every request fails (it hangs up at once):
    # cached files still load, and a missing one is reported as not cached
    with socket.create_server(("127.0.0.1", 0)) as server:
        threading.Thread(target=_hang_up, args=(server,), daemon=True).start()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub.hub_reachable()
        got = load_dictionary(f"hf://someone/tiny-saes/{SAE_PATH}")
        assert torch.equal(got.W_dec, sae.W_dec.detach())
        with pytest.raises(DictionaryConfigError, match="not in the hub cache .* hub is offline"):
            load_dictionary("hf://someone/tiny-saes/elsewhere")


def _hang_up(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        conn.close()


def _fake_saelens(monkeypatch, directory: dict) -> None:
    """sae_lens' registry module with the given releases (sae_lens is not installed here)."""
    names = ["sae_lens", "sae_lens.loading", "sae_lens.loading.pretrained_saes_directory"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[names[-1]].get_pretrained_saes_directory = lambda: directory


def test_saelens_ref__resolved_through_the_registry(cache, tmp_path, monkeypatch):
    sae = _trained_like("topk")
    _saelens_repo(cache, tmp_path, sae, repo="jbloom/tiny-res")
    p = _gemma_params()
    write_hub_repo(cache, "google/gemma-scope-2b-pt-res",
                   {"layer_3/width_16k/average_l0_5/params.npz": _npz_bytes(tmp_path, p)})
    lookup = types.SimpleNamespace
    _fake_saelens(monkeypatch, {
        "tiny-res": lookup(repo_id="jbloom/tiny-res", saes_map={HOOK: SAE_PATH},
                           conversion_func=None, config_overrides=None),
        "gemma-scope-2b-pt-res-canonical": lookup(
            repo_id="google/gemma-scope-2b-pt-res",
            saes_map={"layer_3/width_16k/canonical": "layer_3/width_16k/average_l0_5"},
            conversion_func="gemma_2", config_overrides=None),
        "llama-scope": lookup(repo_id="fnlp/x", saes_map={"a": "b"},
                              conversion_func="llama_scope", config_overrides=None)})
    got = load_dictionary(f"saelens://tiny-res/{HOOK}")
    assert got.architecture == "topk" and torch.equal(got.W_dec, sae.W_dec.detach())
    gem = load_dictionary("saelens://gemma-scope-2b-pt-res-canonical/layer_3/width_16k/canonical")
    assert gem.architecture == "jumprelu" and gem.cfg.hook_name == "blocks.3.hook_resid_post"
    assert np.array_equal(gem.threshold.detach().numpy(), p["threshold"])
    with pytest.raises(DictionaryConfigError, match="has no SAE id 'nope'"):
        load_dictionary("saelens://tiny-res/nope")
    with pytest.raises(DictionaryConfigError, match="no release 'nope'"):
        load_dictionary("saelens://nope/x")
    with pytest.raises(DictionaryConfigError, match="'llama_scope' converter"):
        load_dictionary("saelens://llama-scope/a")


def test_saelens_ref__without_sae_lens_says_to_give_repo_and_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "sae_lens", None)  # import fails
    with pytest.raises(DictionaryConfigError) as err:
        load_dictionary("saelens://gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")
    msg = str(err.value)
    assert "\n" not in msg and "sae_lens is not importable" in msg and "hf://REPO_ID/PATH" in msg


def test_parse_ref__grammar_and_errors():
    r = parse_ref("hf://google/gemma-scope-2b-pt-res@abc123/layer_12/width_16k/average_l0_82")
    assert (r.repo_id, r.revision, r.path, r.fmt) == (
        "google/gemma-scope-2b-pt-res", "abc123", "layer_12/width_16k/average_l0_82", "auto")
    r = parse_ref("hf://datasets/me/d/x/params.npz")
    assert (r.repo_type, r.repo_id, r.path, r.fmt) == ("dataset", "me/d", "x/params.npz", "npz")
    r = parse_ref("hf://me/saes/a/sae_weights.safetensors")
    assert (r.path, r.fmt) == ("a", "saelens")
    assert parse_ref("hf://me/saes").path == ""
    for bad, why in (("hf://justone", "OWNER/REPO"), ("hf://me/saes@/a", "empty @REVISION"),
                     ("hf://me/bad repo/a", "not a valid repo id")):
        with pytest.raises(DictionaryConfigError, match=why):
            parse_ref(bad)
    assert is_dictionary_ref("hf://a/b") and is_dictionary_ref("saelens://r/i")
    assert not is_dictionary_ref("dicts/relu-2x") and not is_dictionary_ref("/abs/path")
    # inside feature:REF:ID the REF ends at the last colon
    spec = "feature:hf://google/gemma-scope-2b-pt-res@v1/layer_3/width_16k/average_l0_5:123"
    ref, _, fid = spec.removeprefix("feature:").rpartition(":")
    assert parse_ref(ref).path == "layer_3/width_16k/average_l0_5" and fid == "123"


def test_infer_hook_and_model__gemma_scope_names():
    assert infer_hook("google/gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82") == \
        "blocks.12.hook_resid_post"
    assert infer_hook("google/gemma-scope-9b-it-mlp", "layer_0/width_131k/x") == \
        "blocks.0.hook_mlp_out"
    assert infer_hook("google/gemma-scope-2b-pt-att", "layer_5/width_16k/x") == \
        "blocks.5.attn.hook_z"
    assert infer_hook("google/gemma-scope-2b-pt-res", "width_16k/x") == ""  # no layer
    assert infer_hook("me/mirror", "layer_5/x") == ""  # the repo name does not say the site
    assert infer_hook("google/gemma-scope-2b-pt-transcoders", "layer_5/x") == ""
    assert infer_model("google/gemma-scope-9b-it-res") == "google/gemma-2-9b-it"
    assert infer_model("google/gemma-scope-27b-pt-res") == "google/gemma-2-27b"
    assert infer_model("me/mirror") == ""


def test_load_dictionary__local_folders_keep_working(tmp_path):
    sae = _trained_like("relu")
    folder = save_dictionary(sae, tmp_path / "d")
    for ref in (folder, str(folder)):
        got = load_dictionary(ref)
        assert torch.equal(got.W_enc, sae.W_enc.detach()) and got.cfg.hook_name == HOOK
    assert dictionary_hook(folder) == HOOK
    assert load_dictionary(folder, hook_name="blocks.4.hook_resid_post").cfg.hook_name == \
        "blocks.4.hook_resid_post"
    with pytest.raises(DictionaryConfigError, match="out of range"):
        feature_direction(folder, 16)
