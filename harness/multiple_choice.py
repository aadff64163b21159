"""TruthfulQA multiple choice (MC1/MC2/MC3) from answer log-likelihoods, under any intervention.

As in the original TruthfulQA code, an answer's score is the summed log-probability of its
tokens (" " + answer) after the QA-primer prompt "<primer>\\n\\nQ: <question>\\nA:". Each batch of
questions is scored in two passes: the prompts (left-padded, KV cache kept), then every answer of
those questions on top of its question's cache. The hooks' token counter therefore sees the
prompt as the prompt and the answer tokens as generated tokens, so ``positions`` means the same
here as in generation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from evals.io import progress as progress_bar
from evals.metrics import MCAnswers, mc_reference_answers, mc_scores
from evals.truthfulqa import Question
from harness.kvcache import (
    cache_kwarg,
    common_prefix_length,
    continue_prefix,
    group_prefix_caches,
    output_cache,
    pad_left,
    window_allows_prefix,
)
from harness.prompts import qa_prompt
from harness.steering import Intervention, hooks
from harness.trunk import adopt_layers, patched_forward, recording, replaying, unsteered_blocks


@dataclass(frozen=True)
class MCItem:
    """One question's prompt ids and the token ids of its true and false answers."""

    question_id: int
    answers: MCAnswers
    prompt_ids: tuple[int, ...]
    true_ids: tuple[tuple[int, ...], ...]
    false_ids: tuple[tuple[int, ...], ...]


def mc_items(questions: Sequence[Question], tokenizer) -> list[MCItem]:
    items = []
    for q in questions:
        ans = mc_reference_answers(q.best_answer, q.correct_answers, q.incorrect_answers)
        prompt = tokenizer(qa_prompt(q.question), add_special_tokens=True)["input_ids"]

        def enc(a: str) -> tuple[int, ...]:
            return tuple(tokenizer(" " + a, add_special_tokens=False)["input_ids"])
        items.append(MCItem(q.id, ans, tuple(prompt), tuple(enc(a) for a in ans.true),
                            tuple(enc(a) for a in ans.false)))
    return items


@contextmanager
def head_at(hf_model, at: torch.Tensor) -> Iterator[None]:
    """The LM head sees only the hidden states at flat positions ``at`` (row * width + position)
    of a [rows, width] pass: logits come out [1, len(at), vocab] instead of [rows, width, vocab].
    An answer pass needs logits only where a next answer token is scored, not at padding or at
    an answer's last token; element-wise post-processing of the logits (Gemma's soft-capping)
    still applies. Not re-entrant (a nested one would index twice)."""
    with patched_forward([hf_model.get_output_embeddings()], lambda compute: lambda h: compute(
            h.reshape(-1, h.shape[-1])[at].unsqueeze(0))):
        yield


def _answer_rows(answers, qs, tok, dev):
    rows = [(b, a) for b, i in enumerate(qs) for a in answers[i]]
    if any(len(a) == 0 for _, a in rows):
        raise ValueError("an answer has no tokens")
    width = max(len(a) for _, a in rows)
    a_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    a_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (_, a) in enumerate(rows):
        a_ids[r, :len(a)] = torch.tensor(a)
        a_mask[r, :len(a)] = 1
    owner = torch.tensor([b for b, _ in rows], device=dev)
    return rows, a_ids.to(dev), a_mask.to(dev), owner


def _plan(prompts, answers, batch_questions: int, group_of, packed_batch: int
          ) -> list[list[int]]:
    """Prompt indices per batch: consecutive chunks of ``batch_questions``; packed, each
    group's chunks (as alone), identical chunks of different groups stacked in one batch."""
    if group_of is None:
        return [list(range(s, min(s + batch_questions, len(prompts))))
                for s in range(0, len(prompts), batch_questions)]
    per_batch = max(1, packed_batch // batch_questions)
    return [[i for chunk in chunks[k:k + per_batch] for i in chunk]
            for chunks in _families(prompts, answers, batch_questions, group_of)
            for k in range(0, len(chunks), per_batch)]


@torch.inference_mode()
def answer_logprobs(model, prompts: Sequence[Sequence[int]],
                    answers: Sequence[Sequence[Sequence[int]]],
                    interventions: Sequence[Intervention] = (), batch_questions: int = 4,
                    progress: bool = False,
                    groups: Sequence[Sequence[Intervention]] | None = None,
                    group_of: Sequence[int] | None = None, packed_batch: int = 16
                    ) -> list[list[float]]:
    """Summed log p(answer tokens | prompt) for each answer of each prompt (ragged output).

    Per batch of prompts: one pass over the prompts (KV cache kept), one over all their answers.
    The token prefix the prompts share (the QA primer) is computed once and its cache reused,
    which halves the work; the token counter is told where each batch's prompt ends, so
    ``prompt``/``generated`` positions mean the prompt and the answer tokens exactly.

    Packed (per-row steering): ``groups`` lists steering configurations and ``group_of[i]``
    says which one steers prompt i. Each group's prompts are chunked as alone; chunks of
    different groups holding the same prompts share a batch (up to ``packed_batch`` prompts),
    so every row has the padding and batch-mates' shapes it has alone. With ``packed_batch``
    at most ``batch_questions`` each batch holds one group's chunk, exactly as alone, and the
    groups scoring one chunk share its unsteered trunk (:mod:`harness.trunk`): a group steered
    from block L on replays blocks 0..L-1 from the deepest-unsteered group's pass.
    """
    if (groups is None) != (group_of is None) or (groups is not None and interventions):
        raise ValueError("answer_logprobs: give interventions, or groups with group_of")
    out: list[list[float]] = [[] for _ in prompts]
    shared = common_prefix_length(prompts) if prompts else 0
    longest = max(map(len, prompts), default=0) + max(
        (len(a) for ans in answers for a in ans), default=0)
    shared = shared if window_allows_prefix(model, longest) else 0
    bar = progress_bar(total=len(prompts), desc="multiple choice", unit="q",
                       disable=not progress, leave=False)
    with hooks(model, interventions, groups=groups) as state:
        prefix = None
        if shared:
            prefix = group_prefix_caches(model, state, prompts[0][:shared], group_of)
        run = _BatchRunner(model, state, prompts, answers, shared, prefix, group_of, out)
        if group_of is not None and packed_batch <= batch_questions:
            # one group per batch, as alone: configurations scoring the same chunk share
            # its unsteered trunk (harness.trunk); numbers bitwise those alone
            depth = [unsteered_blocks(model, g) for g in groups]
            for family in _families(prompts, answers, batch_questions, group_of):
                run.family(family, [depth[group_of[qs[0]]] for qs in family])
                bar.update(sum(map(len, family)))
        else:
            for qs in _plan(prompts, answers, batch_questions, group_of, packed_batch):
                run.batch(qs)
                bar.update(len(qs))
    bar.close()
    return out


def _families(prompts, answers, batch_questions: int, group_of) -> list[list[list[int]]]:
    """Each group's prompts chunked as alone; chunks holding the same prompts and answers
    (one per group that scores them) form a family."""
    per_group: dict[int, list[int]] = {}
    for i, g in enumerate(group_of):
        per_group.setdefault(g, []).append(i)
    same: dict[tuple, list[list[int]]] = {}
    for idx in per_group.values():
        for s in range(0, len(idx), batch_questions):
            chunk = idx[s:s + batch_questions]
            key = tuple((tuple(prompts[i]), tuple(map(tuple, answers[i]))) for i in chunk)
            same.setdefault(key, []).append(chunk)
    return list(same.values())


class _BatchRunner:
    """Scores batches of prompts: a pass over the prompts (KV cache kept), one over all their
    answers; writes each answer's summed log-prob into ``out``."""

    def __init__(self, model, state, prompts, answers, shared, prefix, group_of, out):
        self.model, self.state, self.prompts, self.answers = model, state, prompts, answers
        self.shared, self.prefix, self.group_of, self.out = shared, prefix, group_of, out
        self.cache_kw = cache_kwarg(model)

    def family(self, chunks: list[list[int]], depths: list[int]) -> None:
        """Chunks of the same prompts under different groups: the deepest-unsteered one runs
        whole, recording the block outputs the others need; each other replays its
        unsteered blocks from those records."""
        top, *rest = sorted(range(len(chunks)), key=lambda k: -depths[k])
        points = sorted({depths[k] - 1 for k in rest if depths[k] > 0})
        with recording(self.model, points) as rec:
            top_layers = self.batch(chunks[top], keep_layers=max(points, default=-1) + 1)
        for k in rest:
            n = depths[k]
            self.batch(chunks[k], replay=(n, rec[n - 1], top_layers) if n else None)

    def batch(self, qs: list[int], keep_layers: int = 0, replay=None) -> list:
        """Score one batch; ``keep_layers``: return the first so many layers of the prompt
        pass's KV cache (for replays); ``replay``: (blocks, [prompt-pass output, answer-pass
        output] of the last of them, the recorded pass's KV layers)."""
        model, state, tok, dev = self.model, self.state, self.model.tokenizer, self.model.device
        shared, cache_kw = self.shared, self.cache_kw
        ids, mask = pad_left([self.prompts[i][shared:] for i in qs], tok.pad_token_id, dev)
        row_groups = None if self.group_of is None else [self.group_of[i] for i in qs]
        if row_groups is not None:
            state.select_rows(row_groups, dev)
        kwargs = {}
        if self.prefix is not None:
            kwargs[cache_kw] = continue_prefix(self.prefix, row_groups, len(qs))
            full = torch.cat([torch.ones(len(qs), shared, dtype=mask.dtype, device=dev),
                              mask], dim=1)
        else:
            full = mask
        state.reset(shared, full.shape[1])
        with replaying(model, replay[0], replay[1][0]) if replay else nullcontext():
            res = model.hf_model(input_ids=ids, attention_mask=full, use_cache=True,
                                 position_ids=shared + (mask.cumsum(-1) - 1).clamp(min=0),
                                 logits_to_keep=1, **kwargs)
        first = torch.log_softmax(res.logits[:, -1].float(), dim=-1)     # [B, V]
        rows, a_ids, a_mask, owner = _answer_rows(self.answers, qs, tok, dev)
        cache = output_cache(res)
        if replay:
            adopt_layers(cache, replay[2], replay[0])
        kept = [copy.copy(layer) for layer in cache.layers[:keep_layers]]
        cache.batch_select_indices(owner)
        if row_groups is not None:
            state.select_rows([row_groups[b] for b in owner.tolist()], dev)
        pos = shared + mask.sum(1)[owner][:, None] + torch.arange(a_ids.shape[1],
                                                                  device=dev)[None]
        width = a_ids.shape[1]
        at = torch.tensor([r * width + t for r, (_, a) in enumerate(rows)
                           for t in range(len(a) - 1)], dtype=torch.long, device=dev)
        with (replaying(model, replay[0], replay[1][1]) if replay else nullcontext(),
              head_at(model.hf_model, at)):
            res2 = model.hf_model(input_ids=a_ids, attention_mask=torch.cat(
                [full[owner], a_mask], dim=1), position_ids=pos, use_cache=True,
                **{cache_kw: cache})
        logp = torch.log_softmax(res2.logits[0].float(), dim=-1)        # [len(at), V]
        picked = logp.gather(1, a_ids.reshape(-1)[at + 1][:, None])[:, 0]
        start = 0
        for b, a in rows:
            n = len(a)
            total = first[b, a[0]]
            if n > 1:
                total = total + picked[start:start + n - 1].sum()
                start += n - 1
            self.out[qs[b]].append(float(total))
        return kept


def score_mc(model, items: Sequence[MCItem], interventions: Sequence[Intervention] = (),
             batch_questions: int = 4, progress: bool = False,
             groups: Sequence[Sequence[Intervention]] | None = None,
             group_of: Sequence[int] | None = None, packed_batch: int = 16
             ) -> dict[str, np.ndarray]:
    """Per-question MC1, MC2 and MC3 (arrays aligned with ``items``) under ``interventions``
    (or, packed, item i under ``groups[group_of[i]]``)."""
    answers = [list(it.true_ids) + list(it.false_ids) for it in items]
    scores = answer_logprobs(model, [it.prompt_ids for it in items], answers, interventions,
                             batch_questions, progress, groups=groups, group_of=group_of,
                             packed_batch=packed_batch)
    mc = np.array([mc_scores(s[:len(it.true_ids)], s[len(it.true_ids):], it.answers.best_index)
                   for it, s in zip(items, scores)], dtype=np.float64).reshape(-1, 3)
    return {"question_id": np.array([it.question_id for it in items], dtype=np.int64),
            "mc1": mc[:, 0], "mc2": mc[:, 1], "mc3": mc[:, 2]}
