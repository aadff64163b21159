"""Answers to questions under interventions: prompts built, decoded by the one decode loop
(:mod:`harness.decode`: static KV cache, per-row steering, continuous batching) with the
interventions' hooks installed, and cut where each answer ends.

At magnitude 0 the tokens are HF ``generate``'s (greedy, same dtype; tests/harness); the prompts'
shared prefix is computed once per steering group (:mod:`harness.kvcache`).
``generate_kwargs`` gives the HF ``generate`` arguments that decoding matches (parity tests and
benchmarks).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from evals.io import progress as progress_bar
from harness.config import GenerationConfig
from harness.decode import Request, decode
from harness.kvcache import MIN_SHARED_PREFIX, common_prefix_length, window_allows_prefix
from harness.prompts import QA_STOPS, cut_answer, prompt_token_ids, resolve_style
from harness.steering import Intervention, hooks


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar prompt length (longest first), deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generate_kwargs(cfg: GenerationConfig, tokenizer: Any, style: str) -> dict[str, Any]:
    """The keyword arguments passed to HF ``generate`` (also used by parity tests and benchmarks)."""
    kwargs: dict[str, Any] = dict(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample,
                                  pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
    if cfg.min_new_tokens:
        kwargs["min_new_tokens"] = cfg.min_new_tokens
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if style == "qa":
        kwargs.update(stop_strings=list(QA_STOPS), tokenizer=tokenizer)
    return kwargs


def sample_seed(seed: int, question: str) -> int:
    """A question's own sampling seed: the same question gets the same draws under every
    steering configuration and in any batch (crc32 of the run's seed and the question)."""
    return zlib.crc32(f"{seed}\0{question}".encode())


def generate_answers(model, questions: Sequence[str], cfg: GenerationConfig,
                     interventions: Sequence[Intervention] = (), progress: bool = True,
                     desc: str = "generating", share_prefix: bool = True,
                     groups: Sequence[Sequence[Intervention]] | None = None,
                     group_of: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Answer each question; one dict per question, in input order.

    Each dict holds ``prompt_token_ids``, ``answer_token_ids`` (the generated ids cut where the
    answer ends), ``generated_token_ids`` (uncut, without padding) and ``answer`` (text).
    ``share_prefix=False`` runs every prompt whole (same answers, slower; for comparisons).

    Packed (per-row steering): ``groups`` lists steering configurations and ``group_of[i]``
    says which one steers question i (a question may appear once per group); rows of any
    group share the batch. Greedy answers equal each group's answers alone (up to batch-shape
    rounding).
    """
    if (groups is None) != (group_of is None) or (groups is not None and interventions):
        raise ValueError("generate_answers: give interventions, or groups with group_of")
    if group_of is not None and len(group_of) != len(questions):
        raise ValueError(f"group_of has {len(group_of)} entries for {len(questions)} questions")
    tok = model.tokenizer
    style = resolve_style(cfg.prompt_style, tok)
    prompts = [prompt_token_ids(q, style, tok) for q in questions]
    shared = common_prefix_length(prompts) if share_prefix and len(prompts) > 1 else 0
    shared = shared if shared >= MIN_SHARED_PREFIX else 0
    if not window_allows_prefix(model, max(map(len, prompts), default=0) + cfg.max_new_tokens):
        shared = 0
    requests = [Request(tuple(p), group_of[i] if group_of is not None else 0,
                        sample_seed(cfg.seed, questions[i])) for i, p in enumerate(prompts)]
    bar = progress_bar(total=len(questions), desc=desc, unit="q", disable=not progress,
                       leave=False)
    with hooks(model, interventions, groups=groups) as state:
        generated = decode(model, requests, cfg, state,
                           stop_strings=QA_STOPS if style == "qa" else (), prefix_len=shared,
                           bar=bar)
    bar.close()
    results = []
    for p, ids in zip(prompts, generated):
        kept, text = cut_answer(ids, style, tok)
        while ids and ids[-1] == tok.pad_token_id and tok.pad_token_id != tok.eos_token_id:
            ids.pop()
        results.append({"prompt_token_ids": p, "answer_token_ids": kept,
                        "generated_token_ids": ids, "answer": text, "prompt_style": style})
    return results
