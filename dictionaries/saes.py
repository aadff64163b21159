"""The dictionary (sparse autoencoder) module: ReLU, TopK, BatchTopK and JumpReLU encoders.

Weights are laid out as in SAELens: ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec``
[d_sae, d_in], ``b_dec`` [d_in] (and ``threshold`` [d_sae] for BatchTopK / JumpReLU)::

    pre = (x - b_dec) @ W_enc + b_enc        # b_dec is the pre-encoder bias
    f   = act(pre)                           # relu | top-k per token | jumprelu (below)
    x^  = f @ W_dec + b_dec

JumpReLU, as SAELens' ``JumpReLUSAE.encode`` and Gemma Scope's reference code compute it:
``f = relu(pre) * (pre > threshold)``: a feature is exactly zero where its pre-activation is at
or below its threshold and equals the pre-activation above it (the same as ``pre * (pre >
threshold)`` for the non-negative thresholds published dictionaries have). Gemma Scope does not
subtract ``b_dec`` from the input (``apply_b_dec_to_input=False``). BatchTopK dictionaries encode
the same way at inference with the threshold learned in training. JumpReLU dictionaries are
loaded (``io.py``, ``hub.py``), never trained here.

A trained dictionary works in the model's true activation units: the input scale used in
training is folded into the weights (:meth:`Dictionary.fold_activation_scale`) and recorded in
``activation_scale``. Training itself (gradients, schedules) lives in ``steps.py`` / ``trainer.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from dictionaries.config import DictionaryConfig, DictionaryConfigError

# Architectures that encode with a learned per-feature threshold at inference.
THRESHOLD_ARCHITECTURES = ("batchtopk", "jumprelu")
INFERENCE_ARCHITECTURES = ("relu", "topk", *THRESHOLD_ARCHITECTURES)


def jumprelu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``relu(pre) * (pre > threshold)`` (SAELens / Gemma Scope): zero at or below threshold."""
    return torch.relu(pre) * (pre > threshold).to(pre.dtype)


class Dictionary(nn.Module):
    """A sparse autoencoder; ``encode``/``decode``/``forward`` take [..., d_in] tensors."""

    def __init__(self, cfg: DictionaryConfig, *, architecture: str | None = None,
                 apply_b_dec_to_input: bool = True, rescale_acts_by_decoder_norm: bool = False,
                 activation_scale: float = 1.0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.cfg = cfg
        self.architecture = architecture or cfg.architecture
        if self.architecture not in INFERENCE_ARCHITECTURES:
            raise DictionaryConfigError(f"architecture {self.architecture!r} is unknown "
                                        f"(choose {', '.join(INFERENCE_ARCHITECTURES)})")
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.rescale_acts_by_decoder_norm = rescale_acts_by_decoder_norm
        self.activation_scale = float(activation_scale)
        d_in, d_sae = cfg.d_in, cfg.d_sae
        # The size enters the seed: dictionaries of different widths trained side by side must
        # not start from the same directions (that alone would make them look alike by MMCS).
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + d_sae * 7919 + d_in)
        w_dec = torch.randn(d_sae, d_in, generator=gen, dtype=torch.float32)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        kw = {"dtype": dtype, "device": device}
        self.W_dec = nn.Parameter(w_dec.to(**kw))
        self.W_enc = nn.Parameter(w_dec.T.contiguous().to(**kw))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, **kw))
        self.b_dec = nn.Parameter(torch.zeros(d_in, **kw))
        if self.architecture in THRESHOLD_ARCHITECTURES:
            self.threshold = nn.Parameter(torch.zeros(d_sae, **kw), requires_grad=False)
        else:
            self.threshold = None

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> [..., d_sae]: the encoder's affine map before the nonlinearity."""
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        pre = x @ self.W_enc + self.b_enc
        if self.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        return pre

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """The nonlinearity (inference form: BatchTopK and JumpReLU use the threshold)."""
        if self.architecture == "relu":
            return torch.relu(pre)
        if self.architecture == "topk":
            top = pre.topk(self.cfg.k, dim=-1)
            return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
        return jumprelu(pre, self.threshold)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae] (non-negative, sparse)."""
        return self.activate(self.pre_activations(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction [..., d_in] from feature activations."""
        if self.rescale_acts_by_decoder_norm:
            f = f / self.W_dec.norm(dim=-1)
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def feature_directions(self) -> torch.Tensor:
        """[d_sae, d_in] unit-norm decoder rows (directions in true activation units)."""
        w = self.W_dec.detach()
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Give every decoder row unit norm (the sparse-coding constraint)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def fold_activation_scale(self, scale: float) -> None:
        """Turn a dictionary trained on ``x * scale`` into one that takes ``x`` directly.

        Feature activations are unchanged; reconstructions come out in true units.
        """
        self.W_enc *= scale
        self.W_dec /= scale
        self.b_dec /= scale
        self.activation_scale = self.activation_scale * float(scale)
