import numpy as np
import pytest
import torch

from evals.truthfulqa import load_csv
from harness.kvcache import cache_kwarg, common_prefix_length, output_cache
from harness.multiple_choice import answer_logprobs, mc_items, score_mc
from harness.steering import Intervention, hooks
from tests.helpers import mini_truthfulqa_csv


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def naive_logprob(model, prompt, answer, interventions) -> float:
    """log p(answer | prompt), prompt and answer run as two passes (the counter's view)."""
    with torch.no_grad(), hooks(model, interventions):
        out = model.hf_model(input_ids=torch.tensor([prompt]), use_cache=True)
        out2 = model.hf_model(input_ids=torch.tensor([answer]),
                              **{cache_kwarg(model): output_cache(out)})
    logits = torch.cat([out.logits, out2.logits], dim=1)[0].double()
    logp = torch.log_softmax(logits, -1)
    n = len(prompt)
    return sum(float(logp[n - 1 + t, answer[t]]) for t in range(len(answer)))


@pytest.mark.parametrize("interventions", [
    (),
    (Intervention("blocks.1.hook_resid_post", torch.ones(64) / 8, 3.0),),  # all via the shared primer
    (Intervention("blocks.0.attn.hook_z", torch.ones(16) / 4, 3.0, "generated", head=1),),
    (Intervention("blocks.0.hook_mlp_out", torch.ones(64) / 8, 3.0, "prompt"),),
])
def test_answer_logprobs__equal_naive_scoring_under_interventions(model, interventions):
    items = mc_items(load_csv(mini_truthfulqa_csv()).by_id([0, 1, 2]), model.tokenizer)
    answers = [list(it.true_ids) + list(it.false_ids) for it in items]
    got = answer_logprobs(model, [it.prompt_ids for it in items], answers, interventions,
                          batch_questions=2)
    for it, ans, scores in zip(items, answers, got):
        assert len(scores) == len(ans)
        for a, s in zip(ans, scores):  # every answer, not only the first two
            assert s == pytest.approx(naive_logprob(model, list(it.prompt_ids), list(a),
                                                    interventions), abs=2e-3)


def test_score_mc__per_question_metrics_from_scores(model):
    items = mc_items(load_csv(mini_truthfulqa_csv()).by_id([5, 6, 7]), model.tokenizer)
    out = score_mc(model, items)
    assert list(out["question_id"]) == [5, 6, 7]
    assert set(np.unique(out["mc1"])) <= {0.0, 1.0}
    assert np.all((out["mc2"] >= 0) & (out["mc2"] <= 1))
    # the QA primer is the prompts' shared prefix
    assert common_prefix_length([it.prompt_ids for it in items]) > 100


def test_answer_logprobs__head_only_at_scored_positions_equals_full_logits(tiny_arch_model):
    """The answer pass computes logits only where an answer token is scored (head_at); on every
    architecture (Gemma's soft-capped logits included) the scores equal a plain full forward."""
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 250, (n,), generator=g).tolist() for n in (7, 4, 9)]
    answers = [[torch.randint(3, 250, (n,), generator=g).tolist() for n in sizes]
               for sizes in ([1, 5], [3, 2, 6], [4])]
    one_token = [[[7], [9]], [[11]], [[13], [5]]]  # batches where no answer token follows
    for ans_set in (answers, one_token):
        got = answer_logprobs(tiny_arch_model, prompts, ans_set, (), batch_questions=2)
        for p, ans, scores in zip(prompts, ans_set, got):
            for a, s in zip(ans, scores):
                assert s == pytest.approx(naive_logprob(tiny_arch_model, p, a, ()), abs=1e-3)
    head = tiny_arch_model.hf_model.get_output_embeddings()
    assert "forward" not in head.__dict__  # the head is restored after each pass
