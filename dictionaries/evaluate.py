"""Evaluate dictionaries: reconstruction metrics on held-out activations, and next-token loss
with the reconstruction spliced into the model ("loss recovered").

Splicing replaces the hook's activation at every non-BOS position with the dictionary's
reconstruction (BOS keeps its own activation, as BOS is excluded from training); zero-ablation
replaces the same positions with zeros. Losses are mean next-token cross-entropy over all
positions of the given contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dictionaries import metrics
from dictionaries.saes import Dictionary


@torch.no_grad()
def encode_batched(sae: Dictionary, x: torch.Tensor, batch: int = 8192
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature activations [n, d_sae], reconstructions [n, d_in]) in chunks of ``batch``."""
    fs, xs = [], []
    for i in range(0, len(x), batch):
        f = sae.encode(x[i:i + batch].to(sae.W_enc.device))
        fs.append(f)
        xs.append(sae.decode(f))
    return torch.cat(fs), torch.cat(xs)


def reconstruction_report(sae: Dictionary, x: torch.Tensor) -> dict[str, float]:
    """MSE, FVU, L0 and the share of features never active on ``x`` [n, d_in]."""
    f, x_hat = encode_batched(sae, x.float())
    report = metrics.reconstruction_metrics(x.float().to(x_hat.device), x_hat, f)
    report["n_tokens"] = len(x)
    return report


def _splice_hook(replace):
    def hook(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        shape = act.shape
        flat = act.flatten(2) if act.dim() == 4 else act
        new = flat.clone()
        new[:, 1:] = replace(flat[:, 1:]).to(act.dtype)
        return new.view(shape)
    return hook


@torch.no_grad()
def spliced_losses_many(model: Any, saes: Sequence[Dictionary], contexts: Sequence[torch.Tensor],
                        hook_name: str, batch_contexts: int = 16) -> list[dict[str, float]]:
    """Mean next-token CE, clean and zero-ablated (computed once) and with each dictionary's
    reconstruction spliced in; one dict per dictionary, with ``loss_recovered``."""
    device = torch.device(getattr(model.cfg, "device", "cpu") or "cpu")
    clean = zero = 0.0
    spliced = [0.0] * len(saes)
    n = 0
    zero_hook = _splice_hook(torch.zeros_like)
    for i in range(0, len(contexts), batch_contexts):
        tokens = torch.stack(list(contexts[i:i + batch_contexts])).to(device)
        weight = tokens.shape[0]
        clean += float(model(tokens, return_type="loss")) * weight
        zero += float(model.run_with_hooks(tokens, return_type="loss",
                                           fwd_hooks=[(hook_name, zero_hook)])) * weight
        for j, sae in enumerate(saes):
            hook = _splice_hook(lambda a, sae=sae: sae(a.float()))
            spliced[j] += float(model.run_with_hooks(tokens, return_type="loss",
                                                     fwd_hooks=[(hook_name, hook)])) * weight
        n += weight
    n = max(1, n)
    out = []
    for total in spliced:
        row = {"ce_clean": clean / n, "ce_spliced": total / n, "ce_zero": zero / n}
        row["loss_recovered"] = metrics.loss_recovered(row["ce_clean"], row["ce_spliced"],
                                                       row["ce_zero"])
        out.append(row)
    return out


def spliced_losses(model: Any, sae: Dictionary, contexts: Sequence[torch.Tensor],
                   hook_name: str, batch_contexts: int = 16) -> dict[str, float]:
    """Mean next-token CE: clean, with the reconstruction spliced in, and zero-ablated."""
    return spliced_losses_many(model, [sae], contexts, hook_name, batch_contexts)[0]
