"""The shared unsteered trunk (harness.trunk): packed MC scoring that replays the blocks below
each configuration's first steered one gives bitwise the log-probs of scoring it alone, on every
tested architecture, and computes those blocks once."""

from __future__ import annotations

import pytest
import torch

from harness.multiple_choice import answer_logprobs
from harness.steering import Intervention, block_modules
from harness.trunk import unsteered_blocks


def _unit(seed: int, n: int) -> torch.Tensor:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _groups(model):
    d, d_head = model.d_model, model.d_model // 4
    return [
        [Intervention("blocks.0.hook_resid_post", _unit(1, d), 3.0)],             # replays 1
        [],                                                                       # whole model
        [Intervention("blocks.1.attn.hook_z", _unit(2, d_head), 4.0, head=2)],     # replays 1
        [Intervention("blocks.0.hook_mlp_out", _unit(3, d), 2.0, "generated")],    # replays 0
        [Intervention("blocks.1.hook_resid_pre", _unit(4, d), -2.0, "prompt"),
         Intervention("blocks.1.hook_resid_post", _unit(5, d), 1.5)],             # replays 1
        [Intervention("blocks.0.hook_resid_post", _unit(1, d), 0.0)],             # zero: whole
    ]


def _mc_inputs():
    g = torch.Generator().manual_seed(0)
    primer = torch.randint(3, 250, (20,), generator=g).tolist()  # a shared prefix (>= 16)
    prompts = [primer + torch.randint(3, 250, (n,), generator=g).tolist() for n in (3, 5, 2, 4, 6)]
    answers = [[torch.randint(3, 250, (n,), generator=g).tolist() for n in sizes]
               for sizes in ([2, 4], [1, 3, 5], [3], [2, 2, 6], [4, 1])]
    return prompts, answers


def test_unsteered_blocks__counts_the_blocks_below_the_first_steered_one(tiny_arch_model):
    assert [unsteered_blocks(tiny_arch_model, g) for g in _groups(tiny_arch_model)] == [1, 2, 1, 0, 1, 2]


def test_answer_logprobs__trunk_replay_equals_each_group_alone_bitwise(tiny_arch_model):
    model = tiny_arch_model
    groups = _groups(model)
    prompts, answers = _mc_inputs()
    alone = [answer_logprobs(model, prompts, answers, g, batch_questions=2) for g in groups]
    group_of = [g for g in range(len(groups)) for _ in prompts]
    first_block = next(block_modules(model)[0].children())
    calls = []
    handle = first_block.register_forward_hook(lambda *_: calls.append(1))
    try:
        packed = answer_logprobs(model, prompts * len(groups), answers * len(groups),
                                 batch_questions=2, groups=groups, group_of=group_of,
                                 packed_batch=2)
    finally:
        handle.remove()
    for g in range(len(groups)):
        assert packed[g * len(prompts):(g + 1) * len(prompts)] == alone[g], f"group {g}"
    assert alone[0] != alone[1] and alone[2] != alone[1] and alone[3] != alone[1]
    # block 0 computed only by the deepest-unsteered group (1; group 5 replays all its
    # blocks from it) and the one steered inside block 0 (3): 3 chunks x 2 passes each, plus
    # one shared-prefix pass per group (computed alone); alone: 6 groups x 3 chunks x 2 passes
    assert len(calls) == 2 * 3 * 2 + len(groups)
