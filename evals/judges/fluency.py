"""Fluency features: how likely the unsteered model finds an answer, given the question.

Steering at large magnitudes makes text the unsteered model would never write (repetition,
gibberish, self-talk); its per-token log-probability under the unsteered model measures that.
The prompt is ``Question: <question>\\nAnswer:`` (no references: fluency, not correctness), the
answer cut at ``max_answer_tokens``. Answers to one question share the prefix's KV cache, as in
:func:`evals.judges.features.probe_features`, but the forward runs through every block and the
LM head, so it costs about three times the probe's forward (which stops after block 12 of 30):
an opt-in block of the learned judge (recipe ``fluency=True``), not part of the default recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

FLUENCY_VERSION = "1"
FLUENCY_NAMES = ("mean_logprob", "mean_logprob_first8", "frac_below_minus10", "min_logprob")


def fluency_prefix(question: str) -> str:
    return f"Question: {question}\nAnswer:"


@torch.inference_mode()
def fluency_features(hf_model, tokenizer, questions: Sequence[str], answers: Sequence[str],
                     batch_size: int = 32, max_answer_tokens: int = 48,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """[len(answers), len(FLUENCY_NAMES)] float32: per-token log-probabilities of
    ``" " + answer`` after ``fluency_prefix(question)``, summarised (an empty answer: zeros)."""
    from transformers import DynamicCache

    from evals.judges.features import (
        _cache_kw,
        _decoder_layers,
        _layer_kv,
        batch_after_prefix,
    )

    n_layers = len(_decoder_layers(hf_model)[1])
    kw = _cache_kw(hf_model)
    device = next(hf_model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.zeros((len(answers), len(FLUENCY_NAMES)), dtype=np.float32)
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        groups.setdefault(q, []).append(i)
    for question, idxs in groups.items():
        p_ids = tokenizer(fluency_prefix(question))["input_ids"]
        cache = DynamicCache()
        first = hf_model(input_ids=torch.tensor([p_ids], device=device), use_cache=True,
                         **{kw: cache})
        last_logp = torch.log_softmax(first.logits[0, -1].float(), -1)
        n_prefix = len(p_ids)
        kv = [_layer_kv(cache, L) for L in range(n_layers)]
        toks = {i: tokenizer(" " + answers[i], add_special_tokens=False)["input_ids"]
                [:max_answer_tokens] for i in idxs}
        ordered = sorted((i for i in idxs if toks[i]), key=lambda i: len(toks[i]))
        for start in range(0, len(ordered), batch_size):
            chunk = ordered[start:start + batch_size]
            ids, mask, positions, batch_cache = batch_after_prefix(
                [toks[i] for i in chunk], n_prefix, pad, kv)
            logits = hf_model(input_ids=ids.to(device), attention_mask=mask.to(device),
                              position_ids=positions.expand(len(chunk), -1).to(device),
                              use_cache=True, **{kw: batch_cache}).logits.float()
            logp = torch.log_softmax(logits, -1)
            for r, i in enumerate(chunk):
                t = torch.tensor(toks[i], device=device)
                lp = torch.cat([last_logp[t[:1]], logp[r, :len(t) - 1].gather(
                    -1, t[1:, None])[:, 0]]).cpu().numpy()
                out[i] = (lp.mean(), lp[:8].mean(), (lp < -10).mean(), lp.min())
            if progress:
                progress(len(chunk))
    return out
