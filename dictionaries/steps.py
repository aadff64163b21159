"""One training step's losses and gradients, written out by hand for speed.

The loss per token is ``||x - x^||^2`` (summed over d_in, averaged over the batch) plus
  * ReLU: ``l1 * sum_i f_i * ||W_dec[i]||`` (L1 weighted by decoder norms);
  * TopK / BatchTopK: ``aux_k_coefficient * scale * ||e^ - (x - x^)||^2``, the AuxK loss in which
    the ``k_aux = d_in / 2`` most active *dead* features reconstruct the residual
    (``scale = min(1, n_dead / k_aux)``).

Autograd would spend a sixth [batch x d_in x d_sae] matmul on the gradient of the encoder
input (because ``b_dec`` is subtracted there); here that gradient is only needed summed over
the batch, which is a matrix-vector product. So a step costs five big matmuls (forward 2,
backward 3): ``10 * d_in * d_sae`` FLOPs per token. ``tests/dictionaries/test_steps.py`` checks
these gradients against autograd.

Once training has made the feature activations sparse (below ``SPARSE_BELOW`` density, as ReLU
dictionaries soon are and TopK ones always are), the decoder forward, both weight gradients
and the sampled gradient of the active pre-activations run as sparse x dense products: four of
the five matmuls shrink with the density, and only the encoder's forward stays dense.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from dictionaries.saes import Dictionary

SPARSE_BELOW = 0.05  # density of non-zero feature activations under which the sparse path runs


@dataclass
class StepResult:
    """Scalar losses (floats) and what the trainer needs for bookkeeping."""

    mse: float
    sparsity: float
    aux: float
    l0: float
    fired: torch.Tensor  # [d_sae] bool: features active on at least one token of the batch
    min_positive: float | None  # BatchTopK: smallest kept activation (threshold statistics)
    per_token_error: torch.Tensor  # [batch] ||x - x^||^2, for resampling


def _select(pre: torch.Tensor, sae: Dictionary) -> tuple[torch.Tensor, float | None]:
    """Training-time nonlinearity: (f [batch, d_sae], BatchTopK's smallest kept positive value).

    ``pre`` may be overwritten.
    """
    arch = sae.architecture
    if arch == "relu":
        return pre.relu_(), None
    if arch == "topk":
        top = pre.topk(sae.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu_()), None
    if arch == "batchtopk":
        flat = pre.relu_().view(-1)
        n_keep = min(flat.numel(), sae.cfg.k * pre.shape[0])
        top = flat.topk(n_keep, sorted=False)
        positive = top.values[top.values > 0]
        min_positive = float(positive.min()) if positive.numel() else None
        return torch.zeros_like(flat).scatter_(0, top.indices, top.values).view_as(pre), \
            min_positive
    raise ValueError(f"cannot train architecture {arch!r}")


def compute_grads(sae: Dictionary, x: torch.Tensor, l1_coefficient: float,
                  dead: torch.Tensor | None, sparse: bool | None = None) -> StepResult:
    """Forward + backward for one batch ``x`` [batch, d_in]; writes ``.grad`` of every weight.

    ``dead`` [d_sae] bool marks dead features (AuxK); ``l1_coefficient`` is the current
    (warmed-up) L1 weight for ReLU dictionaries. ``sparse`` forces (True) or forbids (False)
    the sparse path; by default it is taken when fewer than ``SPARSE_BELOW`` of the feature
    activations are non-zero and no AuxK term is needed.
    """
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    batch = x.shape[0]
    with torch.no_grad():
        xc = x - b_dec
        pre = torch.addmm(b_enc, xc, W_enc)
        n_dead = int(dead.sum()) if dead is not None and sae.architecture != "relu" else 0
        use_aux = n_dead > 0 and sae.cfg.aux_k_coefficient > 0
        pre_raw = pre.clone() if use_aux else None
        f, min_positive = _select(pre, sae)
        active = f > 0
        n_active = int(torch.count_nonzero(active))
        l0 = n_active / batch
        if sparse is None:
            sparse = n_active < SPARSE_BELOW * f.numel() and not use_aux
        if sparse:
            if use_aux:
                raise ValueError("the sparse path has no AuxK term")
            return _sparse_step(sae, x, xc, f, active, l1_coefficient, l0, min_positive)
        x_hat = torch.addmm(b_dec, f, W_dec)
        err = x_hat.sub_(x)  # x^ - x
        per_token_error = err.pow(2).sum(dim=1)
        mse = float(per_token_error.sum()) / batch
        grad_out = err.mul_(2.0 / batch)  # dL/dx^
        f_sum = f.sum(dim=0)
        fired = f_sum > 0

        grad_f = grad_out @ W_dec.T
        sparsity = 0.0
        grad_w_dec_extra = None
        if sae.architecture == "relu":
            norms = W_dec.norm(dim=1)
            sparsity = float(f_sum @ norms) / batch
            grad_f.add_(norms, alpha=l1_coefficient / batch)
            grad_w_dec_extra = W_dec * (f_sum * (l1_coefficient / batch) / norms)[:, None]
        grad_pre = grad_f.mul_(active)

        aux = 0.0
        grad_aux_out = f_aux = None
        if use_aux and pre_raw is not None and dead is not None:
            k_aux = min(sae.d_in // 2 or 1, n_dead)
            scale = min(1.0, n_dead / max(1, sae.d_in // 2))
            masked = pre_raw.masked_fill_(~dead, float("-inf"))
            top = masked.topk(k_aux, dim=-1, sorted=False)
            f_aux = torch.zeros_like(masked).scatter_(-1, top.indices, top.values.relu_())
            residual_err = f_aux @ W_dec  # e^ ; target is x - x^ = -err
            residual_err.add_(grad_out, alpha=batch / 2.0)  # e^ - (x - x^)
            coef = sae.cfg.aux_k_coefficient * scale
            aux = coef * float(residual_err.pow(2).sum()) / batch
            grad_aux_out = residual_err.mul_(2.0 * coef / batch)
            grad_pre.add_((grad_aux_out @ W_dec.T).mul_(f_aux > 0))

        W_enc.grad = xc.T @ grad_pre
        b_enc.grad = grad_pre.sum(dim=0)
        W_dec.grad = f.T @ grad_out
        if grad_aux_out is not None:
            W_dec.grad.addmm_(f_aux.T, grad_aux_out)
        if grad_w_dec_extra is not None:
            W_dec.grad.add_(grad_w_dec_extra)
        b_dec.grad = grad_out.sum(dim=0) - W_enc @ b_enc.grad
    return StepResult(mse=mse, sparsity=sparsity, aux=aux, l0=l0, fired=fired,
                      min_positive=min_positive, per_token_error=per_token_error)


def _csr(crow_counts: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
         shape: tuple[int, int]) -> torch.Tensor:
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=vals.device)
    torch.cumsum(crow_counts, 0, out=crow[1:])
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we test what we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, vals, shape)


def _sparse_step(sae: Dictionary, x: torch.Tensor, xc: torch.Tensor, f: torch.Tensor,
                 active: torch.Tensor, l1_coefficient: float, l0: float,
                 min_positive: float | None) -> StepResult:
    """The same gradients as the dense path, touching only the non-zero feature activations.

    Decoding, the decoder gradient and the encoder gradient become sparse x dense products, and
    the gradient of the loss w.r.t. the active pre-activations is a sampled product; only the
    encoder's forward matmul stays dense. Worth it below a few percent density.
    """
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    batch, d_sae = f.shape
    rows, cols = active.nonzero().unbind(1)  # row-major order
    vals = f[rows, cols]
    pattern = _csr(torch.bincount(rows, minlength=batch), cols, vals, (batch, d_sae))
    x_hat = (pattern @ W_dec).add_(b_dec)
    err = x_hat.sub_(x)
    per_token_error = err.pow(2).sum(dim=1)
    mse = float(per_token_error.sum()) / batch
    grad_out = err.mul_(2.0 / batch)
    f_sum = torch.zeros(d_sae, dtype=f.dtype, device=f.device).index_add_(0, cols, vals)
    grad_vals = torch.sparse.sampled_addmm(pattern, grad_out, W_dec.T, beta=0.0).values()
    sparsity = 0.0
    grad_w_dec_extra = None
    if sae.architecture == "relu":
        norms = W_dec.norm(dim=1)
        sparsity = float(f_sum @ norms) / batch
        grad_vals = grad_vals + norms[cols] * (l1_coefficient / batch)
        grad_w_dec_extra = W_dec * (f_sum * (l1_coefficient / batch) / norms)[:, None]
    order = torch.argsort(cols, stable=True)
    col_counts = torch.bincount(cols, minlength=d_sae)
    rows_t = rows[order]
    W_dec.grad = _csr(col_counts, rows_t, vals[order], (d_sae, batch)) @ grad_out
    if grad_w_dec_extra is not None:
        W_dec.grad.add_(grad_w_dec_extra)
    W_enc.grad = (_csr(col_counts, rows_t, grad_vals[order], (d_sae, batch)) @ xc).T.contiguous()
    b_enc.grad = torch.zeros_like(b_enc).index_add_(0, cols, grad_vals)
    b_dec.grad = grad_out.sum(dim=0) - W_enc @ b_enc.grad
    return StepResult(mse=mse, sparsity=sparsity, aux=0.0, l0=l0, fired=f_sum > 0,
                      min_positive=min_positive, per_token_error=per_token_error)


@torch.no_grad()
def remove_parallel_grad(sae: Dictionary) -> None:
    """Drop the part of each decoder row's gradient along the row (keeps rows unit-norm)."""
    w, g = sae.W_dec, sae.W_dec.grad
    if g is None:
        return
    g -= w * ((g * w).sum(dim=1, keepdim=True) / (w * w).sum(dim=1, keepdim=True))
