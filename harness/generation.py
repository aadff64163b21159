"""Batched, KV-cached generation with interventions active at every decoding step.

Generation runs Hugging Face ``generate`` on the plain model with the interventions' hooks
installed, so at magnitude 0 it is token-for-token what ``transformers`` gives, and the KV cache,
stopping and sampling are HF's own. Prompts are sorted by length and left-padded per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

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
                     desc: str = "generating") -> list[dict[str, Any]]:
    """Answer each question; one dict per question, in input order.

    Each dict holds ``prompt_token_ids``, ``answer_token_ids`` (the generated ids cut where the
    answer ends), ``generated_token_ids`` (uncut, without padding) and ``answer`` (text).
    """
    tok = model.tokenizer
    style = resolve_style(cfg.prompt_style, tok)
    prompts = [prompt_token_ids(q, style, tok) for q in questions]
    kwargs = generate_kwargs(cfg, tok, style)
    results: list[dict[str, Any] | None] = [None] * len(questions)
    bar = tqdm(total=len(questions), desc=desc, unit="q", disable=not progress, leave=False)
    with hooks(model, interventions) as state:
        for b, batch in enumerate(plan_batches([len(p) for p in prompts], cfg.batch_size)):
            ids, mask = pad_left([prompts[i] for i in batch], tok.pad_token_id, model.device)
            if cfg.do_sample:
                torch.manual_seed(cfg.seed + b)
            state.reset()
            out = model.hf_model.generate(input_ids=ids, attention_mask=mask, **kwargs)
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
