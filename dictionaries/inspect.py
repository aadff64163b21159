"""Feature inspection: top and uniform examples, logit lens, ablated text.

* Top examples: the (context, position) pairs with the largest activation of one feature.
* Uniform examples: the feature's *positive* activations binned as [0, w), [w, 2w), ...
  (``w = bin_width``, default 1) and up to ``per_bin`` examples sampled from every bin, so the
  view shows how the feature behaves at every strength, not only at its peak.
* Logit lens: the decoder direction times the unembedding (``W_U``; for tied embeddings that
  is the embedding matrix), scaled elementwise by the final norm's weight when given.
  Optionally the highest-norm unembedding directions of tokens the tokenizer never produces
  (special tokens, and tokens that do not come back from tokenizing their own text, e.g.
  byte-fallback or unused entries) are projected out of the direction first; the removed tokens
  are reported.
* Ablated text: for one context and position, drop each earlier token in turn (the sequence
  gets one shorter) and report how the feature's activation at that token changes.

BOS positions are excluded everywhere (activation 0), as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dictionaries.activations import run_hook
from dictionaries.saes import Dictionary


@dataclass(frozen=True)
class Example:
    context: int
    position: int
    activation: float


def _feature_encoder(sae: Dictionary, feature: int):
    """x [..., d_in] -> activation of ``feature`` [...]; one column unless TopK needs all."""
    if sae.architecture == "topk" or sae.rescale_acts_by_decoder_norm:
        return lambda x: sae.encode(x)[..., feature]
    w, b = sae.W_enc[:, feature], sae.b_enc[feature]
    thr = sae.threshold[feature] if sae.threshold is not None else None

    def encode(x: torch.Tensor) -> torch.Tensor:
        x = x.to(w.dtype)
        pre = (x - sae.b_dec if sae.apply_b_dec_to_input else x) @ w + b
        act = torch.relu(pre)
        return act * (pre > thr) if thr is not None else act
    return encode


@torch.no_grad()
def feature_activations(model: Any, sae: Dictionary, contexts: Sequence[torch.Tensor],
                        feature: int, hook_name: str | None = None, batch_contexts: int = 16
                        ) -> torch.Tensor:
    """[n_contexts, context_len] activations of ``feature`` (0 at the BOS position)."""
    hook = hook_name or sae.cfg.hook_name
    encode = _feature_encoder(sae, feature)
    rows = []
    for i in range(0, len(contexts), batch_contexts):
        tokens = torch.stack(list(contexts[i:i + batch_contexts]))
        acts = encode(run_hook(model, tokens, hook).float().to(sae.W_enc.device)).cpu()
        acts[:, 0] = 0.0
        rows.append(acts)
    return torch.cat(rows)


def top_examples(acts: torch.Tensor, k: int = 10) -> list[Example]:
    """The ``k`` largest positive entries of acts [n_contexts, pos], largest first."""
    flat = acts.flatten()
    k = min(k, int((flat > 0).sum()))
    if k == 0:
        return []
    values, idx = flat.topk(k)
    width = acts.shape[1]
    return [Example(int(i) // width, int(i) % width, float(v)) for v, i in zip(values, idx)]


def uniform_examples(acts: torch.Tensor, per_bin: int = 5, bin_width: float = 1.0,
                     seed: int = 0) -> dict[float, list[Example]]:
    """Positive activations binned [0, w), [w, 2w), ...; up to ``per_bin`` random picks each.

    Keys are the bins' lower edges (only non-empty bins); examples within a bin are sorted by
    activation, descending.
    """
    if bin_width <= 0:
        raise ValueError("bin_width must be positive")
    flat = acts.flatten()
    width = acts.shape[1]
    positive = (flat > 0).nonzero().squeeze(1)
    bins = torch.floor(flat[positive] / bin_width).long()
    gen = torch.Generator().manual_seed(seed)
    out: dict[float, list[Example]] = {}
    for b in torch.unique(bins).tolist():
        members = positive[bins == b]
        pick = members[torch.randperm(len(members), generator=gen)[:per_bin]]
        examples = [Example(int(i) // width, int(i) % width, float(flat[i])) for i in pick]
        out[b * bin_width] = sorted(examples, key=lambda e: -e.activation)
    return out


def format_example(tokenizer: Any, tokens: torch.Tensor, position: int, before: int = 12,
                   after: int = 4) -> str:
    """The text around ``position`` with that token marked as ``[[token]]``."""
    lo, hi = max(1, position - before), min(len(tokens), position + after + 1)
    parts = []
    for j in range(lo, hi):
        piece = tokenizer.decode([int(tokens[j])])
        parts.append(f"[[{piece}]]" if j == position else piece)
    return "".join(parts).replace("\n", "\\n")


# ----------------------------------------------------------------------------- logit lens
def never_produced_tokens(tokenizer: Any) -> list[int]:
    """Token ids that tokenizing text does not produce: special / added tokens, plus tokens
    whose own decoded text does not tokenize back to exactly that token (unused or unreachable
    entries). Pieces of multi-byte characters (their text alone is not valid UTF-8) are kept
    out of the list: they do come out of tokenizing rare characters. A context-free test."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    vocab = len(tokenizer)
    ids = list(range(vocab))
    texts = tokenizer.batch_decode([[i] for i in ids])
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    unproduced = {i for i, text, enc in zip(ids, texts, encoded)
                  if enc != [i] and "\ufffd" not in text}
    return sorted(special | unproduced)


def unembedding(model: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W_U [d_model, vocab], final-norm weight [d_model] or None) of a bridge or HF model."""
    if hasattr(model, "W_U"):
        w_u = model.W_U
    elif hasattr(model, "get_output_embeddings"):
        w_u = model.get_output_embeddings().weight.T
    else:
        raise ValueError("model exposes no unembedding (W_U or get_output_embeddings)")
    norm_w = None
    ln = getattr(model, "ln_final", None)
    if ln is not None:
        params = dict(ln.named_parameters())
        weights = [p for name, p in params.items() if name.endswith("weight") or name == "w"]
        norm_w = weights[0].detach() if weights else None
    return w_u.detach().float(), None if norm_w is None else norm_w.float()


@dataclass(frozen=True)
class LogitLens:
    top: list[tuple[int, float]]
    bottom: list[tuple[int, float]]
    removed: list[int]  # token ids whose unembedding directions were projected out


def logit_lens(direction: torch.Tensor, w_u: torch.Tensor, k: int = 10,
               norm_weight: torch.Tensor | None = None,
               removable: Sequence[int] = (), n_remove: int = 0) -> LogitLens:
    """Top/bottom ``k`` tokens of ``direction`` [d] through ``w_u`` [d, vocab].

    With ``n_remove > 0``, the ``n_remove`` tokens of ``removable`` with the largest
    unembedding norms (after the norm weight) have their unembedding directions projected out
    of the direction first.
    """
    w = w_u.double()
    if norm_weight is not None:
        w = w * norm_weight.double()[:, None]
    d = direction.double()
    removed: list[int] = []
    if n_remove > 0 and len(removable):
        cand = torch.as_tensor(list(removable), dtype=torch.long)
        norms = w[:, cand].norm(dim=0)
        order = norms.argsort(descending=True)[:n_remove]
        removed = cand[order].tolist()
        q, _ = torch.linalg.qr(w[:, removed])
        d = d - q @ (q.T @ d)
    logits = d @ w
    k = min(k, logits.numel())
    top = logits.topk(k)
    bottom = (-logits).topk(k)
    return LogitLens(top=[(int(i), float(v)) for v, i in zip(top.values, top.indices)],
                     bottom=[(int(i), -float(v)) for v, i in zip(bottom.values, bottom.indices)],
                     removed=removed)


# ----------------------------------------------------------------------------- ablated text
@torch.no_grad()
def ablated_text(model: Any, sae: Dictionary, tokens: torch.Tensor, position: int, feature: int,
                 hook_name: str | None = None) -> tuple[float, list[tuple[int, float]]]:
    """(activation at ``position``, [(j, change when token j is dropped)] for 1 <= j < position).

    Token 0 (BOS) is never dropped. The change is ``ablated - original`` of ``feature``'s
    activation at the same token (now at position ``position - 1``).
    """
    hook = hook_name or sae.cfg.hook_name
    if not 1 <= position < len(tokens):
        raise ValueError(f"position {position} must be in 1..{len(tokens) - 1}")
    encode = _feature_encoder(sae, feature)
    variants = [tokens[: position + 1]]
    variants += [torch.cat([tokens[:j], tokens[j + 1: position + 1]]) for j in range(1, position)]
    base = float(encode(run_hook(model, variants[0][None], hook).float()[0, position]))
    changes = []
    if len(variants) > 1:
        batch = torch.stack(variants[1:])
        acts = encode(run_hook(model, batch, hook).float()[:, position - 1])
        changes = [(j, float(a) - base) for j, a in zip(range(1, position), acts)]
    return base, changes
