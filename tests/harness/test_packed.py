"""Per-row steering and packed sweeps: rows steered differently in one batch get exactly what
each gets alone (the hook adds the row's own vector), and packed answers / MC scores equal
running each steering configuration alone."""

from __future__ import annotations

import pytest
import torch

from harness.config import GenerationConfig
from harness.kvcache import pad_left
from harness.steering import Intervention, hooks
from tests.helpers import tiny_llama

PROMPTS = [[1, 520, 2361, 314, 1175], [1, 8181, 2361], [1, 77, 78, 79], [1, 5, 6, 7, 8, 9]]
Z, RESID = "blocks.1.attn.hook_z", "blocks.1.hook_resid_post"


def _unit(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=g)
    return v / v.norm()


def _groups(model):
    d_head = model.d_model // 4
    resid, z0, z2 = _unit(1, model.d_model), _unit(2, d_head), _unit(3, d_head)
    return [
        [],                                                           # unsteered
        [Intervention(RESID, resid, 2.5)],                            # residual
        [Intervention(Z, z2, -1.5, head=2), Intervention(Z, z0, 4.0, head=0)],  # two heads
        [Intervention(RESID, resid, 0.75, "prompt"), Intervention(Z, z0, 1.0, head=0)],
    ]


def _forward(model, interventions=(), groups=None, rows=None, record=(Z, RESID)):
    ids, mask = pad_left(PROMPTS, model.tokenizer.pad_token_id, model.device)
    with torch.inference_mode(), hooks(model, interventions, record, groups=groups) as state:
        state.reset()
        if rows is not None:
            state.select_rows(rows)
        model.hf_model(input_ids=ids, attention_mask=mask)
    return {h: state.records[h][0] for h in record}


def test_hooks__per_row_deltas_add_exactly_each_rows_vector():
    """At attn.hook_z of layer 1 nothing upstream is steered, so each row's record is the
    unsteered record plus exactly its own group's per-head vectors (zeros for unsteered rows)."""
    model = tiny_llama()
    groups, rows = _groups(model), [2, 0, 3, 1]
    base = _forward(model)[Z]
    got = _forward(model, groups=groups, rows=rows)[Z]
    for b, g in enumerate(rows):
        expect = base[b].clone()
        for iv in groups[g]:
            if iv.hook == Z:
                expect[:, iv.head] = expect[:, iv.head] + iv.vector * iv.magnitude
        assert torch.equal(got[b], expect), f"row {b} (group {g})"
    assert not torch.equal(got[0], base[0])  # the test can fail: steering did act


def test_hooks__per_row_steering_equals_each_group_alone():
    """Every recorded activation of row b equals the same batch run with row b's group alone
    (bit for bit), for residual + per-head groups and prompt-only positions."""
    model = tiny_llama()
    groups, rows = _groups(model), [3, 1, 0, 2]
    got = _forward(model, groups=groups, rows=rows)
    for b, g in enumerate(rows):
        alone = _forward(model, groups[g])
        for hook in (Z, RESID):
            assert torch.equal(got[hook][b], alone[hook][b]), f"{hook} row {b} (group {g})"


def test_hooks__per_row_steering_needs_rows_selected_for_the_batch():
    model = tiny_llama()
    with pytest.raises(RuntimeError, match="select_rows"):
        _forward(model, groups=_groups(model), rows=[0, 1])  # 2 selected, 4 in the batch
    with pytest.raises(ValueError, match="outside"):
        _forward(model, groups=_groups(model), rows=[0, 1, 2, 9])


@pytest.mark.parametrize("style", ["chat", "qa"])
def test_generate_answers__packed_equals_each_group_alone_on_a_tiny_model(style):
    """Packed generation (shared-prefix caches stacked per group, mixed batches) gives each
    question of each group the tokens it gets when the group runs alone."""
    from harness.generation import generate_answers

    model = tiny_llama()
    groups = _groups(model)
    qs = ["What is the capital of France?", "Why is the sky blue?", "Who wrote Hamlet?"]
    cfg = GenerationConfig(max_new_tokens=6, batch_size=4, prompt_style=style)
    alone = [generate_answers(model, qs, cfg, g, progress=False) for g in groups]
    flat = [q for _ in groups for q in qs]
    group_of = [g for g in range(len(groups)) for _ in qs]
    packed = generate_answers(model, flat, cfg, progress=False, groups=groups, group_of=group_of)
    for k, (g, row) in enumerate(zip(group_of, packed)):
        ref = alone[g][k % len(qs)]
        assert row["generated_token_ids"] == ref["generated_token_ids"], (g, k)
    assert len({tuple(a[0]["generated_token_ids"]) for a in alone}) > 1  # groups differ


def _embedded_groups(model):
    """Baseline, a residual direction, a per-head set (decoding steps only), and both at once
    with the residual one on the prompt only: different hooks, heads, magnitudes, positions."""
    from harness.directions import random_direction

    d_head = model.d_model // model.hf_model.config.num_attention_heads
    resid = random_direction(7, model.d_model)
    heads = [Intervention(f"blocks.{layer}.attn.hook_z", random_direction(layer * 10 + h, d_head),
                          6.0, "generated", head=h) for layer in (10, 12, 14) for h in (0, 3)]
    return [[],
            [Intervention("blocks.15.hook_resid_post", resid, 12.0)],
            heads,
            [Intervention("blocks.8.hook_resid_post", resid, 8.0, "prompt"), *heads[:2]]]


@pytest.fixture(scope="module")
def embedded():
    from evals.truthfulqa import load_csv
    from tests.helpers import embedded_model, truthfulqa_csv

    model = embedded_model()
    return model, _embedded_groups(model), load_csv(truthfulqa_csv()).questions[:6]


@pytest.mark.slow
def test_generate_answers__packed_equals_each_cell_alone_on_the_embedded_model(embedded):
    """fp32, chat prompts (shared system-turn prefix), batches of 4 mixing the 4 groups."""
    from harness.generation import generate_answers

    model, groups, questions = embedded
    qs = [q.question for q in questions]
    cfg = GenerationConfig(max_new_tokens=24, batch_size=4, prompt_style="chat")
    alone = [generate_answers(model, qs, cfg, g, progress=False) for g in groups]
    packed = generate_answers(model, [q for _ in groups for q in qs], cfg, progress=False,
                              groups=groups, group_of=[g for g in range(4) for _ in qs])
    eos = model.tokenizer.eos_token_id

    def tokens(a):  # up to the first EOS: rows after it are padding (pad == EOS here), as
        ids = a["generated_token_ids"]  # long as the longest answer of the batch
        return ids[:ids.index(eos) + 1] if eos in ids else ids
    for g in range(len(groups)):
        got = packed[g * len(qs):(g + 1) * len(qs)]
        assert [tokens(a) for a in got] == [tokens(a) for a in alone[g]], f"group {g}"
        assert [(a["answer_token_ids"], a["answer"]) for a in got] == \
            [(a["answer_token_ids"], a["answer"]) for a in alone[g]], f"group {g}"
    for g in range(1, len(groups)):  # every steered group changes some answer
        assert [a["answer"] for a in alone[g]] != [a["answer"] for a in alone[0]], g


@pytest.mark.slow
def test_score_mc__packed_equals_each_cell_alone_on_the_embedded_model(embedded):
    """MC log-probs of packed batches equal each group's alone (QA primer shared prefix)."""
    from harness.multiple_choice import answer_logprobs, mc_items, score_mc

    model, groups, questions = embedded
    items = mc_items(questions, model.tokenizer)
    prompts = [it.prompt_ids for it in items]
    answers = [list(it.true_ids) + list(it.false_ids) for it in items]
    alone = [answer_logprobs(model, prompts, answers, g) for g in groups]
    group_of = [g for g in range(len(groups)) for _ in items]
    packed = answer_logprobs(model, prompts * len(groups), answers * len(groups),
                             groups=groups, group_of=group_of)
    gap = max(abs(a - b) for g in range(len(groups)) for p, q in zip(
        packed[g * len(items):(g + 1) * len(items)], alone[g]) for a, b in zip(p, q))
    # Each packed batch holds the same prompts, padding and prefix cache per row as alone, but
    # more rows (4 questions x 4 groups): fp32 GEMM blocking depends on the row count, so a
    # summed log-prob (~ -30) may move by a few ulps (measured: 3.8e-6 = 2 ulps at 30). MC1
    # and MC3 (comparisons) must be identical; MC2 and log-probs equal to those ulps.
    print(f"largest |packed - alone| log-prob: {gap:.3g}")
    assert gap <= 2e-5
    mc = score_mc(model, items * len(groups), groups=groups, group_of=group_of)
    for g in range(len(groups)):
        ref = score_mc(model, items, groups[g])
        got = {k: v[g * len(items):(g + 1) * len(items)] for k, v in mc.items()}
        assert got["mc1"].tolist() == ref["mc1"].tolist()
        assert got["mc3"].tolist() == ref["mc3"].tolist()
        assert abs(got["mc2"] - ref["mc2"]).max() <= 1e-5
    assert alone[1] != alone[0] and alone[2] != alone[0]
    # one group per batch (the CPU sweep's MC): the groups share the unsteered trunk
    # (harness.trunk) and every log-prob is bitwise the one alone
    trunk = answer_logprobs(model, prompts * len(groups), answers * len(groups),
                            groups=groups, group_of=group_of, packed_batch=4)
    assert trunk == [row for g in range(len(groups)) for row in alone[g]]


@pytest.mark.parametrize("sample", [False, True])
def test_run_sweep__packed_cells_equal_cell_by_cell(tmp_path, sample):
    """The runner: a packed run (all 7 cells in one pack: baseline, per-head ITI, residual
    meandiff and its random control, per fold) writes the same rows and MC scores per cell as
    a cell-by-cell run, each cell in its own files; sampled too (each question draws from its
    own seed, so a cell's samples do not depend on the cells packed with it)."""
    from evals.rundir import RunDir
    from harness.sweep.config import load_config
    from harness.sweep.run import run_sweep
    from tests.harness.sweep.test_run import config_text
    from tests.helpers import tiny_llama_folder

    model_dir = tiny_llama_folder(tmp_path / "tiny")
    ref = tmp_path / "ref.txt"
    ref.write_text("The cat sat on the mat.\nRain falls in the autumn.\n")
    path = tmp_path / "sweep.toml"
    text = config_text(model_dir, ref)
    if sample:
        text = text.replace("[generation]\n", "[generation]\ndo_sample = true\nseed = 7\n")
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.generation.do_sample == sample
    run_sweep(cfg, tmp_path / "alone", progress=False, pack=1)
    for f in (tmp_path / "alone" / "directions").glob("*"):  # same fitted directions
        (tmp_path / "packed" / "directions").mkdir(parents=True, exist_ok=True)
        (tmp_path / "packed" / "directions" / f.name).write_bytes(f.read_bytes())
    run_sweep(cfg, tmp_path / "packed", progress=False, pack=16)

    def cells(run):
        return {d["cell_id"]: (d, rows) for d, rows in RunDir(run).iter_cells()}
    alone, packed = cells(tmp_path / "alone"), cells(tmp_path / "packed")
    assert sorted(alone) == sorted(packed) and len(alone) == 7
    for cid, (desc, rows) in alone.items():
        p_desc, p_rows = packed[cid]
        assert p_rows == rows, cid  # answers: identical
        mc, p_mc = desc["mc_per_question"], p_desc["mc_per_question"]
        assert p_mc["question_id"] == mc["question_id"] and p_mc["mc1"] == mc["mc1"], cid
        assert max(abs(a - b) for a, b in zip(p_mc["mc2"], mc["mc2"])) <= 1e-5, cid  # ulps
        for key in ("mc1", "n_mc", "ce", "kl"):
            assert p_desc["metrics"][key] == desc["metrics"][key], (cid, key)
        assert (p_desc["packed_cells"], desc["packed_cells"]) == (7, 1)
    # the cells do differ (this random tiny model answers blank lines whatever the steering,
    # so its MC scores show it; the embedded-model tests above cover differing answers)
    assert len({str(d["mc_per_question"]["mc2"]) for d, _ in alone.values()}) == 7
