"""The decode loop (harness.decode): continuous batching keeps each prompt's tokens those of HF
``generate`` on that prompt alone, through row refills and cache compactions; sampled rows draw
from their own seeds, whatever their neighbours; EOS waits for ``min_new_tokens``."""

from __future__ import annotations

import pytest
import torch

from harness.config import GenerationConfig
from harness.decode import DecodeLoop, Request, decode
from harness.generation import generate_answers, generate_kwargs, sample_seed
from harness.kvcache import common_prefix_length
from harness.prompts import QA_STOPS, prompt_token_ids
from harness.steering import Intervention, hooks

QUESTIONS = ["Why is the sky blue?", "Who wrote Hamlet?", "Can pigs fly?",
             "What happens if you crack your knuckles?", "Is the Earth flat?",
             "Where is Paris?", "What is the capital of Japan, and why is it there?"]


def _prompts(model):
    return [prompt_token_ids(q, "qa", model.tokenizer) for q in QUESTIONS]


def _alone(model, prompt, cfg, stops=QA_STOPS):
    """HF generate on one prompt alone, no padding: the reference."""
    kwargs = {**generate_kwargs(cfg, model.tokenizer, "qa"), "stop_strings": list(stops)}
    with torch.inference_mode():
        out = model.hf_model.generate(input_ids=torch.tensor([prompt]), **kwargs)
    return out[0, len(prompt):].tolist()


EARLY_STOPS = ("~", "\x05")  # bytes the byte-level model says mid-answer in some answers only


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory):
    """A tiny random Llama on a byte vocabulary with far-apart logits (tests.helpers), loaded
    from its HF folder: its greedy answers differ from prompt to prompt, so stop strings end
    rows at different steps."""
    from harness.config import ModelConfig
    from harness.models import load_model
    from tests.helpers import tiny_model_folder

    folder = tiny_model_folder("llama", tmp_path_factory.mktemp("byte-llama"))
    return load_model(ModelConfig(str(folder), device="cpu", dtype="float32"))


def test_decode__continuous_batching_equals_each_prompt_alone(byte_model):
    """Two rows for fourteen prompts: rows end at different steps and are refilled at once,
    the cache compacts when the write slot reaches its capacity; every prompt's tokens equal
    HF generate's on it alone."""
    cfg = GenerationConfig(max_new_tokens=12, batch_size=2, prompt_style="qa")
    prompts = _prompts(byte_model) * 2
    shared = common_prefix_length(prompts)
    stops = QA_STOPS + EARLY_STOPS
    with hooks(byte_model) as state:
        loop = DecodeLoop(byte_model, [Request(tuple(p)) for p in prompts], cfg, state,
                          stop_strings=stops, prefix_len=shared)
        got = loop.run()
    for p, g in zip(prompts, got):
        assert g == _alone(byte_model, p, cfg, stops)
    assert loop.stats["prefills"] >= 4          # rows were refilled one by one
    assert loop.stats["compactions"] >= 1       # and the cache shifted left at least once
    assert len({len(g) for g in got}) > 1       # answers of different lengths: real refills


def test_decode__a_rows_samples_do_not_depend_on_its_neighbours(tiny_model):
    """Sampling: a question's tokens are the same alone, in a batch of seven, or in a batch of
    two; another seed gives other tokens."""
    cfg = GenerationConfig(max_new_tokens=10, batch_size=7, prompt_style="qa", do_sample=True,
                           temperature=1.0, top_p=0.9, seed=3)
    together = generate_answers(tiny_model, QUESTIONS, cfg, progress=False)
    pairs = generate_answers(tiny_model, QUESTIONS[::-1], GenerationConfig(
        **{**cfg.__dict__, "batch_size": 2}), progress=False)[::-1]
    for k, q in enumerate(QUESTIONS):
        (alone,) = generate_answers(tiny_model, [q], cfg, progress=False)
        assert alone["generated_token_ids"] == together[k]["generated_token_ids"]
        assert alone["generated_token_ids"] == pairs[k]["generated_token_ids"]
    other = generate_answers(tiny_model, QUESTIONS, GenerationConfig(
        **{**cfg.__dict__, "seed": 4}), progress=False)
    assert [a["generated_token_ids"] for a in other] != \
        [a["generated_token_ids"] for a in together]
    assert sample_seed(3, QUESTIONS[0]) != sample_seed(4, QUESTIONS[0])


def test_decode__min_new_tokens_holds_eos_back_as_hf_does(byte_model):
    """With EOS made the likeliest token (steering the last block's output along EOS's
    output-embedding row), no row ends before ``min_new_tokens`` and every row ends right
    after; the tokens equal HF generate's under the same hooks."""
    tok = byte_model.tokenizer
    cfg = GenerationConfig(max_new_tokens=8, min_new_tokens=5, batch_size=3, prompt_style="qa")
    eos_row = byte_model.hf_model.lm_head.weight[tok.eos_token_id].detach().clone()
    ivs = [Intervention(f"blocks.{byte_model.n_layers - 1}.hook_resid_post",
                        eos_row / eos_row.norm(), 200.0)]
    prompts = _prompts(byte_model)[:3]
    with hooks(byte_model, ivs) as state:
        got = decode(byte_model, [Request(tuple(p)) for p in prompts], cfg, state)
        refs = []
        for p in prompts:
            state.reset()
            with torch.inference_mode():
                out = byte_model.hf_model.generate(input_ids=torch.tensor([p]),
                                                   **generate_kwargs(cfg, tok, "chat"))
            refs.append(out[0, len(p):].tolist())
    assert got == refs
    assert all(len(g) == 6 and g[5] == tok.eos_token_id and tok.eos_token_id not in g[:5]
               for g in got), got


@pytest.mark.parametrize("batch", [1, 3])
def test_decode__no_requests_and_any_batch_size(tiny_model, batch):
    cfg = GenerationConfig(max_new_tokens=4, batch_size=batch, prompt_style="qa")
    with hooks(tiny_model) as state:
        assert decode(tiny_model, [], cfg, state) == []
        got = decode(tiny_model, [Request(tuple(p)) for p in _prompts(tiny_model)[:2]], cfg,
                     state, stop_strings=QA_STOPS)
    assert [g for g in got] == [_alone(tiny_model, p, cfg) for p in _prompts(tiny_model)[:2]]


def test_decode__bfloat16_equals_bfloat16_generate_up_to_exact_ties(tmp_path):
    """bf16 (opt-in, ``--dtype bfloat16``): alone (batch 1) the loop's tokens equal HF generate's
    in bf16 on every prompt. In a batch (3 rows for seven prompts, refills) bf16 rounding may
    differ with the batch's shape, so a greedy step whose top two logits are within bf16's
    rounding can go either way: every divergence must be such a step (checked on the prompt
    run alone), and at most one of the seven prompts may diverge (one does, at a top-2 gap of
    exactly 0: both logits round to the same bf16 number)."""
    from harness.config import ModelConfig
    from harness.models import load_model
    from tests.helpers import tiny_model_folder

    model = load_model(ModelConfig(str(tiny_model_folder("llama", tmp_path)), device="cpu",
                                   dtype="bfloat16"))
    assert model.hf_model.dtype == torch.bfloat16
    prompts = _prompts(model)
    for batch in (1, 3):
        cfg = GenerationConfig(max_new_tokens=10, batch_size=batch, prompt_style="qa")
        got = generate_answers(model, QUESTIONS, cfg, progress=False)
        diverged = 0
        for p, g in zip(prompts, got):
            ref, mine = _alone(model, p, cfg), g["generated_token_ids"]
            if mine == ref:
                continue
            assert batch > 1, "alone, bf16 must equal HF generate exactly"
            diverged += 1
            step = next(k for k, (a, b) in enumerate(zip(mine, ref)) if a != b)
            with torch.inference_mode():
                logits = model.hf_model(torch.tensor([p + ref[:step]])).logits[0, -1].float()
            top = logits.topk(2).values
            ulp = 2.0 ** (torch.floor(torch.log2(top[0].abs())) - 7)  # bf16: 8 bits of mantissa
            assert top[0] - top[1] <= 2 * ulp, (step, top.tolist())
        assert diverged <= 1
