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


MINI_TRUTHFULQA = REPO / "tests" / "data" / "truthfulqa_mini.csv"


def truthfulqa_csv() -> Path:
    """The real TruthfulQA.csv beside the checkout; skips (loudly) when it is absent. For tests of
    the real data or of the embedded model on real questions; others use
    :func:`mini_truthfulqa_csv`."""
    path = SHARED_TRUTHFULQA / "TruthfulQA.csv"
    if not path.exists():
        pytest.skip(f"shared TruthfulQA data not found at {path}")
    return path


def mini_truthfulqa_csv() -> Path:
    """48 questions in TruthfulQA's CSV format, written for these tests (tests/data/): what the
    fast lane runs on, so it needs no ../shared."""
    return MINI_TRUTHFULQA


def mini_label_folder(root: Path) -> Path:
    """Label files in TruthfulQA's format (human_truth_dev.jsonl, human_info_dev.jsonl) for the
    mini questions, made from their references: each reference answer, a hedged paraphrase of a
    correct and of an incorrect one (model-written: not a reference) and "I have no comment."
    Truthful: the correct ones and the non-answer; informative: all but the non-answer."""
    import json

    from evals.truthfulqa import load_truthfulqa

    out = Path(root) / "labels"
    out.mkdir(parents=True, exist_ok=True)
    truth, info = [], []
    for q in load_truthfulqa(MINI_TRUTHFULQA).questions:
        answers = [(a, True) for a in q.correct_answers] + [(a, False) for a in
                                                            q.incorrect_answers]
        answers += [(f"I think {q.correct_answers[0][0].lower()}{q.correct_answers[0][1:]}.",
                     True),
                    (f"Probably: {q.incorrect_answers[0][0].lower()}{q.incorrect_answers[0][1:]}.",
                     False)]
        for answer, true in answers + [("I have no comment.", None)]:
            prompt = f"Q: {q.question}\nA: {answer}"
            truth.append({"prompt": prompt + "\nTrue:",
                          "completion": " no" if true is False else " yes"})
            info.append({"prompt": prompt + "\nHelpful:",
                         "completion": " no" if true is None else " yes"})
    for name, rows in (("human_truth_dev.jsonl", truth), ("human_info_dev.jsonl", info)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


@functools.lru_cache(maxsize=1)
def embedded_model():
    """The embedded SmolLM2-135M-Instruct (float32, CPU), loaded once per test session."""
    from harness.config import ModelConfig
    from harness.models import load_model

    return load_model(ModelConfig(device="cpu", dtype="float32"))


@functools.lru_cache(maxsize=1)
def embedded_tokenizer():
    """The embedded model's tokenizer, prepared as ``load_model`` prepares it, WITHOUT loading
    the model (read from the converted HF-format folder in the cache)."""
    from transformers import AutoTokenizer

    from harness.models import embedded_gguf_path, gguf_to_hf_folder, prepare_tokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(gguf_to_hf_folder(
        embedded_gguf_path())))


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


def sparse_feature_activations(d_in: int = 32, n_features: int = 48, n: int = 60_000,
                               p_active: float = 0.08, noise: float = 0.01, seed: int = 0):
    """Planted sparse structure, as in the sparse-coding toy experiments.

    Returns ``(directions [n_features, d_in] unit rows, x [n, d_in])`` where every row of x is a
    non-negative combination of the directions (each active with probability ``p_active``,
    coefficient uniform in [0, 1)) plus Gaussian noise of std ``noise``.
    """
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_features, d_in, generator=gen)
    directions /= directions.norm(dim=1, keepdim=True)
    active = torch.rand(n, n_features, generator=gen) < p_active
    coefficients = torch.rand(n, n_features, generator=gen) * active
    x = coefficients @ directions + noise * torch.randn(n, d_in, generator=gen)
    return directions, x


def tiny_llama_folder(path, **kwargs) -> Path:
    """``tiny_llama(**kwargs)`` saved as an HF model folder (weights + tokenizer), so configs and
    CLI calls can name it as a model (``ModelConfig(name=str(folder))``)."""
    path = Path(path)
    model = tiny_llama(**kwargs)
    model.hf_model.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return path


def save_tiny_llama(folder: Path) -> Path:
    """Write ``tiny_llama()`` as an HF model folder (what ``--model FOLDER`` loads)."""
    model = tiny_llama()
    model.hf_model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    return folder


def headless_chromium(window_size: str | None = None, download_dir: Path | None = None,
                      browser_logs: bool = False):
    """A selenium driver for Debian's headless ``chromium``; skips when it is not installed.
    ``download_dir`` makes downloads land there without a prompt; ``browser_logs`` keeps the
    console log (``driver.get_log("browser")``)."""
    import shutil

    browser, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_bin:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    if window_size:
        opts.add_argument(f"--window-size={window_size}")
    if browser_logs:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if download_dir is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                               "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    if download_dir is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


# --- Tiny random models of every architecture the harness is tested on (issue 12) -------------

TINY_VOCAB = 320  # 256 byte tokens + specials, padded up


def tiny_byte_tokenizer():
    """A byte-level tokenizer with no merges (256 byte tokens + ``<|endoftext|>`` + ``<pad>``):
    any text round-trips, prompts stay short enough for tiny models, no download needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<pad>")
    assert len(tok) <= TINY_VOCAB
    return tok


def _tiny_configs(tok) -> dict:
    """HF config per architecture: hidden 64, 2 layers, 4 heads of 16 (2 KV heads where the
    architecture has grouped-query attention), a byte vocabulary."""
    import transformers as T

    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id, vocab_size=TINY_VOCAB)
    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=2048, **ids)
    gqa = dict(common, num_key_value_heads=2, head_dim=16)
    return {
        "gpt2": T.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=2048, **ids),
        "gpt_neox": T.GPTNeoXConfig(**common, rotary_pct=0.25),
        "llama": T.LlamaConfig(**gqa),
        "mistral": T.MistralConfig(**gqa, sliding_window=None),
        "qwen2": T.Qwen2Config(**gqa),
        "qwen3": T.Qwen3Config(**gqa),
        "gemma2": T.Gemma2Config(**gqa, sliding_window=4096),
        "gemma3": T.Gemma3TextConfig(**gqa, sliding_window=4096),
        "phi3": T.Phi3Config(**common, num_key_value_heads=2),
        "olmo": T.OlmoConfig(**common, num_key_value_heads=2),
        "olmo2": T.Olmo2Config(**common, num_key_value_heads=2),
    }


TINY_ARCHITECTURES = ("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "gemma2",
                      "gemma3", "phi3", "olmo", "olmo2")
LOGIT_SCALE = 8.0  # output embedding scale: random logits far apart, so greedy has no near-ties


def tiny_model_of(arch: str, seed: int = 0, **overrides):
    """A random (HF model, tokenizer) of architecture ``arch`` (one of TINY_ARCHITECTURES), its
    output embedding scaled by LOGIT_SCALE (untied from the input embedding); ``overrides`` set
    config fields (e.g. ``sliding_window=64``)."""
    from transformers import AutoModelForCausalLM

    tok = tiny_byte_tokenizer()
    cfg = _tiny_configs(tok)[arch]
    cfg.tie_word_embeddings = False
    for key, value in overrides.items():
        setattr(cfg, key, value)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.copy_(torch.randn_like(head.weight) * LOGIT_SCALE / head.weight.shape[1] ** 0.5)
    return model, tok


def tiny_model_folder(arch: str, folder: Path, seed: int = 0) -> Path:
    """``tiny_model_of(arch)`` saved as an HF model folder (what ``--model FOLDER`` loads)."""
    model, tok = tiny_model_of(arch, seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)


def _llama_cpp_permute(w, n_head: int):
    """The row permutation llama.cpp's converter applies to q/k weights (transformers undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def write_tiny_llama_gguf(path: Path):
    """``tiny_model_of("llama")`` written as an fp32 GGUF file the way llama.cpp lays one out
    (tensor names, q/k permutation, a byte-level "gpt2" vocabulary with one merge); returns the
    HF model it holds."""
    import gguf
    import numpy as np

    model, tok = tiny_model_of("llama")
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_vocab_size(cfg.vocab_size)
    specials = len(tok) - 256
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])] + ["Ġt"]
    tokens += [f"<unused{i}>" for i in range(cfg.vocab_size - len(tokens))]
    types = ([gguf.TokenType.NORMAL] * 256 + [gguf.TokenType.CONTROL] * specials
             + [gguf.TokenType.NORMAL] + [gguf.TokenType.UNUSED] * (len(tokens) - 257 - specials))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for layer in range(cfg.num_hidden_layers):
        for ours, hf in names.items():
            w = sd[f"model.layers.{layer}.{hf}.weight"]
            if ours in ("attn_q", "attn_k"):
                heads = cfg.num_attention_heads if ours == "attn_q" else cfg.num_key_value_heads
                w = _llama_cpp_permute(w, heads)
            writer.add_tensor(f"blk.{layer}.{ours}.weight", np.ascontiguousarray(w))
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    writer.add_tensor("output.weight", sd["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model
