"""Batched, KV-cached generation with interventions active at every decoding step.

Generation runs Hugging Face ``generate`` on the plain model with the interventions' hooks
installed, so at magnitude 0 it is token-for-token what ``transformers`` gives, and the KV cache,
stopping and sampling are HF's own. Prompts are sorted by length and left-padded per batch.

The token prefix all prompts share (the QA primer's ~190 tokens, a chat template's system turn)
is run once per call, under the same hooks, and its KV cache is copied into every batch:
``[prefix][padding][rest of the prompt]``, positions counted from the attention mask as HF does,
so each prompt sees exactly the positions and context it would see alone.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from evals.io import progress as progress_bar
from harness.config import GenerationConfig
from harness.prompts import QA_STOPS, cut_answer, prompt_token_ids, resolve_style
from harness.steering import Intervention, hooks


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar prompt length (longest first), deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_left(prompts: Sequence[Sequence[int]], pad_id: int,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) [batch, max_len], left-padded with ``pad_id``."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids.to(device), mask.to(device)


MIN_SHARED_PREFIX = 16  # tokens: a shorter shared prefix is not worth computing apart


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix shared by all ``seqs`` (leaving at least one token each)."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for i in range(max(n, 0)):
        if any(s[i] != first[i] for s in seqs):
            return i
    return max(n, 0)


def window_allows_prefix(model, longest: int) -> bool:
    """Whether a shared prefix may be cached apart for sequences up to ``longest`` tokens: a
    sliding attention window (Mistral, Gemma 2/3) counts the padding between the prefix and
    the rest, so sequences longer than the window must run whole (left padding only)."""
    window = getattr(model, "attention_window", None)
    return window is None or longest <= window


def cache_kwarg(model) -> str:
    """The name the HF model's forward (and generate) takes a KV cache under."""
    params = inspect.signature(model.hf_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out):
    """The KV cache of a forward pass's output (either transformers naming)."""
    return getattr(out, "cache", None) or out.past_key_values


def prefix_cache(model, prefix: Sequence[int]):
    """The KV cache of one token sequence (batch 1), computed under whatever hooks are active."""
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=model.device)
    return output_cache(model.hf_model(input_ids=ids, use_cache=True, logits_to_keep=1))


def with_prefix(prefix: Sequence[int], cache, ids: torch.Tensor, mask: torch.Tensor,
                rows: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(input_ids, attention_mask, cache) for a batch continuing ``prefix``: the prefix's ids and
    a copy of its cache repeated over the batch (or, per-row steering, each row's group's
    cache: ``cache`` maps group -> cache, ``rows`` gives each row's group), then the
    left-padded rest."""
    batch = ids.shape[0]
    head = torch.tensor([list(prefix)], dtype=ids.dtype, device=ids.device).expand(batch, -1)
    return (torch.cat([head, ids], dim=1),
            torch.cat([torch.ones_like(head, dtype=mask.dtype), mask], dim=1),
            continue_prefix(cache, rows, batch))


def repeat_cache(cache, batch: int):
    """A copy of a batch-1 KV cache repeated ``batch`` times (the original stays reusable)."""
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(batch)
    return cache


def stack_caches(caches: Sequence[Any], rows: Sequence[int]):
    """A new KV cache whose row b is a copy of the batch-1 cache ``caches[rows[b]]`` (per-row
    steering: each steering group's shared prefix, computed alone, continued per row)."""
    if len(set(rows)) == 1:
        return repeat_cache(caches[rows[0]], len(rows))
    out = copy.deepcopy(caches[rows[0]])
    index = torch.as_tensor(list(rows), dtype=torch.long)
    for i, layer in enumerate(out.layers):
        if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
            continue
        sel = index.to(layer.keys.device)
        layer.keys = torch.cat([c.layers[i].keys for c in caches])[sel]
        layer.values = torch.cat([c.layers[i].values for c in caches])[sel]
    return out


def group_prefix_caches(model, state, prefix: Sequence[int], groups: Sequence[int] | None):
    """The shared prefix's KV cache under the active hooks: one batch-1 cache, or (per-row
    steering) one per steering group in ``groups``, each computed alone as a cell alone would."""
    if groups is None:
        state.reset()
        return prefix_cache(model, prefix)
    caches = {}
    for g in sorted(set(groups)):
        state.reset()
        state.select_rows([g], model.device)
        caches[g] = prefix_cache(model, prefix)
    return caches


def continue_prefix(caches, rows: Sequence[int] | None, batch: int):
    """A batch's copy of the prefix cache(s): repeated, or stacked per row's group."""
    if rows is None:
        return repeat_cache(caches, batch)
    keys = sorted(caches)
    pos = {g: k for k, g in enumerate(keys)}
    return stack_caches([caches[g] for g in keys], [pos[g] for g in rows])


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


@torch.inference_mode()
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
    says which one steers question i (a question may appear once per group); batches mix
    groups. Greedy answers equal each group's answers alone (up to batch-shape rounding).
    """
    if (groups is None) != (group_of is None) or (groups is not None and interventions):
        raise ValueError("generate_answers: give interventions, or groups with group_of")
    if group_of is not None and len(group_of) != len(questions):
        raise ValueError(f"group_of has {len(group_of)} entries for {len(questions)} questions")
    tok = model.tokenizer
    style = resolve_style(cfg.prompt_style, tok)
    prompts = [prompt_token_ids(q, style, tok) for q in questions]
    kwargs = generate_kwargs(cfg, tok, style)
    shared = common_prefix_length(prompts) if share_prefix and len(prompts) > 1 else 0
    shared = shared if shared >= MIN_SHARED_PREFIX else 0
    if not window_allows_prefix(model, max(map(len, prompts)) + cfg.max_new_tokens):
        shared = 0
    results: list[dict[str, Any] | None] = [None] * len(questions)
    bar = progress_bar(total=len(questions), desc=desc, unit="q", disable=not progress,
                       leave=False)
    cache_kw = cache_kwarg(model)
    with hooks(model, interventions, groups=groups) as state:
        cache = None
        if shared:
            cache = group_prefix_caches(model, state, prompts[0][:shared], group_of)
        for b, batch in enumerate(plan_batches([len(p) for p in prompts], cfg.batch_size)):
            ids, mask = pad_left([prompts[i][shared:] for i in batch], tok.pad_token_id,
                                 model.device)
            rows = None if group_of is None else [group_of[i] for i in batch]
            extra: dict[str, Any] = {}
            if cache is not None:
                ids, mask, extra[cache_kw] = with_prefix(prompts[0][:shared], cache, ids, mask,
                                                         rows)
            if rows is not None:
                state.select_rows(rows, model.device)
            if cfg.do_sample:
                torch.manual_seed(cfg.seed + b)
            state.reset(shared, ids.shape[1] if shared else None)
            out = model.hf_model.generate(input_ids=ids, attention_mask=mask, **kwargs, **extra)
            for row, i in enumerate(batch):
                generated = out[row, ids.shape[1]:].tolist()
                kept, text = cut_answer(generated, style, tok)
                while generated and generated[-1] == tok.pad_token_id and \
                        tok.pad_token_id != tok.eos_token_id:
                    generated.pop()
                results[i] = {"prompt_token_ids": prompts[i], "answer_token_ids": kept,
                              "generated_token_ids": generated, "answer": text,
                              "prompt_style": style}
            bar.update(len(batch))
    bar.close()
    return results  # type: ignore[return-value]
