"""Generation: token-exact parity with plain HF generate, the magnitude effect, answer cutting."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from evals.truthfulqa import load_csv
from harness.config import GenerationConfig
from harness.directions import random_direction
from harness.generation import generate_answers, generate_kwargs, plan_batches
from harness.kvcache import pad_left
from harness.prompts import cut_answer, prompt_token_ids, resolve_style
from harness.steering import Intervention
from tests.helpers import embedded_model, embedded_tokenizer, truthfulqa_csv

N_QUESTIONS = 8


@pytest.fixture(scope="module")
def questions():
    return [q.question for q in load_csv(truthfulqa_csv()).questions[:N_QUESTIONS]]


@pytest.fixture(scope="module")
def plain_hf():
    """An independent copy of the embedded model: plain transformers, no bridge, no hooks."""
    return AutoModelForCausalLM.from_pretrained(embedded_model().source,
                                                dtype=torch.float32).eval()


@pytest.mark.slow
@pytest.mark.parametrize("style", ["chat", "qa"])
def test_generate_answers__magnitude_zero_equals_plain_hf_generate(questions, plain_hf, style):
    model = embedded_model()
    cfg = GenerationConfig(max_new_tokens=32, batch_size=N_QUESTIONS, prompt_style=style)
    vec = random_direction(0, model.d_model)
    ivs = [Intervention("blocks.3.hook_resid_post", vec, 0.0),
           Intervention("blocks.5.attn.hook_z", vec[:64], 0.0, head=1)]
    got = generate_answers(model, questions, cfg, ivs, progress=False)

    tok = model.tokenizer
    prompts = [prompt_token_ids(q, style, tok) for q in questions]
    (batch,) = plan_batches([len(p) for p in prompts], N_QUESTIONS)
    ids, mask = pad_left([prompts[i] for i in batch], tok.pad_token_id, torch.device("cpu"))
    with torch.inference_mode():
        ref = plain_hf.generate(input_ids=ids, attention_mask=mask,
                                **generate_kwargs(cfg, tok, style))
    for row, i in enumerate(batch):
        expected_ids, expected_text = cut_answer(ref[row, ids.shape[1]:].tolist(), style, tok)
        assert got[i]["prompt_token_ids"] == prompts[i]
        assert got[i]["answer_token_ids"] == expected_ids
        assert got[i]["answer"] == expected_text
    assert sum(bool(g["answer"]) for g in got) == N_QUESTIONS


@pytest.mark.slow
@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_generate_answers__shared_prefix_gives_the_answers_of_whole_prompts(questions, positions):
    """The QA primer is computed once and its cache reused: under steering at every positions
    class the answers equal those of running each prompt whole, and the steering acts."""
    model = embedded_model()
    cfg = GenerationConfig(max_new_tokens=12, batch_size=4, prompt_style="qa")
    qs = questions[:4]
    ivs = [Intervention("blocks.4.hook_resid_post", random_direction(7, model.d_model), 32.0,
                        positions)]
    shared = generate_answers(model, qs, cfg, ivs, progress=False)
    whole = generate_answers(model, qs, cfg, ivs, progress=False, share_prefix=False)
    base = generate_answers(model, qs, cfg, progress=False)
    assert [a["generated_token_ids"] for a in shared] == [a["generated_token_ids"] for a in whole]
    assert [a["prompt_token_ids"] for a in shared] == [a["prompt_token_ids"] for a in whole]
    assert [a["generated_token_ids"] for a in shared] != [a["generated_token_ids"] for a in base]


@pytest.mark.slow
def test_generate_answers__batching_does_not_change_greedy_answers_much(questions):
    """Batch of 8 vs one at a time: left padding may flip rare near-ties, never most answers."""
    model = embedded_model()
    batched = generate_answers(model, questions, GenerationConfig(max_new_tokens=16,
                               batch_size=8, prompt_style="chat"), progress=False)
    single = generate_answers(model, questions, GenerationConfig(max_new_tokens=16,
                              batch_size=1, prompt_style="chat"), progress=False)
    same = sum(a["answer"] == b["answer"] for a, b in zip(batched, single))
    assert same >= N_QUESTIONS - 1


@pytest.mark.slow
def test_generate_answers__answers_change_more_as_magnitude_grows(questions):
    model = embedded_model()
    cfg = GenerationConfig(max_new_tokens=16, batch_size=N_QUESTIONS, prompt_style="chat")
    vec = random_direction(7, model.d_model)
    base = generate_answers(model, questions, cfg, progress=False)
    changed_tokens = []
    for mag in (2.0, 16.0, 64.0):
        out = generate_answers(model, questions, cfg,
                               [Intervention("blocks.4.hook_resid_post", vec, mag)], progress=False)
        # tokens of the unsteered answer that are not reproduced at the same place
        diff = 0
        for a, b in zip(base, out):
            x, y = a["answer_token_ids"], b["answer_token_ids"]
            diff += sum(p != q for p, q in zip(x, y)) + abs(len(x) - len(y))
        changed_tokens.append(diff)
    assert changed_tokens[0] <= changed_tokens[1] <= changed_tokens[2]
    assert changed_tokens[2] > 0


@pytest.mark.slow
def test_generate_answers__seeded_sampling_is_reproducible(questions):
    model = embedded_model()
    cfg = GenerationConfig(max_new_tokens=12, batch_size=4, do_sample=True, seed=5)
    a = generate_answers(model, questions[:4], cfg, progress=False)
    b = generate_answers(model, questions[:4], cfg, progress=False)
    assert [x["answer_token_ids"] for x in a] == [x["answer_token_ids"] for x in b]


def test_cut_answer__qa_style_stops_at_blank_line_or_next_question():
    tok = embedded_tokenizer()
    ids = tok("Paris is the capital.\n\nQ: What else?", add_special_tokens=False)["input_ids"]
    kept, text = cut_answer(ids, "qa", tok)
    assert text == "Paris is the capital." and tok.decode(kept).strip() == text
    ids = tok(" Paris.\nQ: next", add_special_tokens=False)["input_ids"]
    assert cut_answer(ids, "qa", tok)[1] == "Paris."
    eos = tok.eos_token_id
    assert cut_answer(ids[:2] + [eos] + ids[2:], "chat", tok)[0] == ids[:2]


def test_resolve_style__auto_is_chat_for_a_chat_tokenizer():
    assert resolve_style("auto", embedded_tokenizer()) == "chat"
