"""Shared builders for tests: paths to the shared data, tiny random models, the embedded model.

Append new builders at the end; keep existing signatures stable (several test modules use them).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_TRUTHFULQA = Path(os.environ.get("TRUTHSTEER_TEST_DATA",
                                        REPO.parent / "shared" / "data" / "truthfulqa"))


def truthfulqa_csv() -> Path:
    """The real TruthfulQA.csv beside the checkout; skips (loudly) when it is absent."""
    path = SHARED_TRUTHFULQA / "TruthfulQA.csv"
    if not path.exists():
        pytest.skip(f"shared TruthfulQA data not found at {path}")
    return path


@functools.lru_cache(maxsize=1)
def embedded_model():
    """The embedded SmolLM2-135M-Instruct (float32, CPU), loaded once per test session."""
    from harness.config import ModelConfig
    from harness.models import load_model

    return load_model(ModelConfig(device="cpu", dtype="float32"))


@functools.lru_cache(maxsize=1)
def embedded_tokenizer():
    return embedded_model().tokenizer


def tiny_llama(n_layers: int = 2, d_model: int = 64, n_heads: int = 4, n_kv_heads: int = 2,
               vocab_size: int | None = None, seed: int = 0):
    """A randomly initialised Llama-architecture LoadedModel using the embedded tokenizer.

    Small enough to run in milliseconds; TransformerLens hook names work as on a real model.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.models import LoadedModel

    tok = embedded_tokenizer()
    cfg = LlamaConfig(vocab_size=vocab_size or len(tok), hidden_size=d_model,
                      intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                      num_attention_heads=n_heads, num_key_value_heads=n_kv_heads,
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    return LoadedModel("tiny-llama", model, tok, torch.device("cpu"), torch.float32, "random")
