"""Dictionary quality metrics as pure functions over tensors (no I/O, no models).

* ``mse``: mean squared error per element, in the activations' own units.
* ``fvu``: fraction of variance unexplained, sum ||x - x^||^2 / sum ||x - mean(x)||^2.
* ``l0``: mean number of active features per token.
* ``dead_fraction``: share of features that never fired (given per-feature fire counts).
* ``loss_recovered``: (CE_zero - CE_spliced) / (CE_zero - CE_clean), 1 = as good as the model.
* ``mmcs``: mean over one dictionary's decoder directions of the best cosine similarity with
  any direction of another (asymmetric; :func:`mmcs_both_ways` gives both directions).
"""

from __future__ import annotations

import torch


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return float((x.float() - x_hat.float()).pow(2).mean())


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Fraction of variance unexplained for rows x, x_hat [n, d] (0 = perfect)."""
    x, x_hat = x.double(), x_hat.double()
    total = (x - x.mean(dim=0)).pow(2).sum()
    if float(total) == 0:
        return float("nan")
    return float((x - x_hat).pow(2).sum() / total)


def l0(f: torch.Tensor) -> float:
    """Mean number of non-zero features per row of f [n, d_sae]."""
    return float((f != 0).sum()) / max(1, f.shape[0])


def fire_counts(f: torch.Tensor) -> torch.Tensor:
    """[d_sae] number of rows on which each feature is non-zero."""
    return (f != 0).sum(dim=0)


def dead_fraction(counts: torch.Tensor) -> float:
    """Share of features whose fire count is zero."""
    return float((counts == 0).float().mean())


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor
                           ) -> dict[str, float]:
    return {"mse": mse(x, x_hat), "fvu": fvu(x, x_hat), "l0": l0(f),
            "dead_fraction": dead_fraction(fire_counts(f))}


def loss_recovered(clean: float, spliced: float, zero: float) -> float:
    """Share of the CE gap between zero-ablation and the clean model that splicing keeps."""
    gap = zero - clean
    if gap == 0:
        return float("nan")
    return (zero - spliced) / gap


def _unit_rows(w: torch.Tensor) -> torch.Tensor:
    w = w.double()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def max_cosines(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """[len(a)] for each row of a [n, d], the largest cosine similarity with a row of b [m, d]."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"directions differ in width: {a.shape[1]} vs {b.shape[1]}")
    ua, ub = _unit_rows(a), _unit_rows(b)
    return torch.cat([(ua[i:i + chunk] @ ub.T).max(dim=1).values
                      for i in range(0, len(ua), chunk)])


def mmcs(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean max cosine similarity of a's rows against b's rows (how well b covers a)."""
    return float(max_cosines(a, b).mean())


def mmcs_both_ways(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """``a_in_b``: how well b covers a's directions; ``b_in_a``: the reverse."""
    return {"a_in_b": mmcs(a, b), "b_in_a": mmcs(b, a)}
