"""One feature's inspection views gathered into a JSON-able dict, and a plain-text rendering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dictionaries import inspect as views
from dictionaries.saes import Dictionary


def _tok(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([int(token_id)]) if tokenizer is not None else str(token_id)


def inspect_feature(sae: Dictionary, feature: int, *, model: Any = None,
                    contexts: Sequence[torch.Tensor] | None = None, top: int = 10,
                    per_bin: int = 3, bin_width: float = 1.0, remove_unused: int = 0,
                    ablate_rank: int = 0, lens_k: int = 10) -> dict[str, Any]:
    """Everything we show about ``feature``; the parts needing a model / corpus are skipped
    when those are not given."""
    cfg = sae.cfg
    report: dict[str, Any] = {
        "feature": feature,
        "dictionary": {"d_in": cfg.d_in, "d_sae": cfg.d_sae, "architecture": sae.architecture,
                       "model_name": cfg.model_name, "hook_name": cfg.hook_name,
                       "activation_scale": sae.activation_scale},
        "decoder_norm": float(sae.W_dec[feature].detach().norm()),
        "encoder_bias": float(sae.b_enc[feature].detach()),
    }
    if model is None:
        return report
    tokenizer = getattr(model, "tokenizer", None)
    w_u, norm_w = views.unembedding(model)
    removable = views.never_produced_tokens(tokenizer) if remove_unused and tokenizer else []
    lens = views.logit_lens(sae.feature_directions()[feature], w_u, k=lens_k,
                            norm_weight=norm_w, removable=removable, n_remove=remove_unused)
    report["logit_lens"] = {
        "top": [{"token": _tok(tokenizer, i), "id": i, "logit": v} for i, v in lens.top],
        "bottom": [{"token": _tok(tokenizer, i), "id": i, "logit": v} for i, v in lens.bottom],
        "removed": [{"token": _tok(tokenizer, i), "id": i} for i in lens.removed],
        "n_never_produced": len(removable),
    }
    if not contexts:
        return report
    acts = views.feature_activations(model, sae, contexts, feature)
    body = acts[:, 1:]
    report["stats"] = {"n_contexts": len(contexts), "n_tokens": body.numel(),
                       "frequency": float((body > 0).float().mean()),
                       "max_activation": float(body.max())}

    def show(ex: views.Example) -> dict[str, Any]:
        return {"context": ex.context, "position": ex.position, "activation": ex.activation,
                "text": views.format_example(tokenizer, contexts[ex.context], ex.position)}

    tops = views.top_examples(acts, top)
    report["top_examples"] = [show(ex) for ex in tops]
    report["uniform_examples"] = {
        f"[{lo:g}, {lo + bin_width:g})": [show(ex) for ex in exs]
        for lo, exs in views.uniform_examples(acts, per_bin, bin_width).items()}
    if tops and ablate_rank < len(tops):
        ex = tops[ablate_rank]
        tokens = contexts[ex.context]
        base, changes = views.ablated_text(model, sae, tokens, ex.position, feature)
        report["ablated_text"] = {
            "example": show(ex), "activation": base,
            "changes": [{"position": j, "token": _tok(tokenizer, tokens[j]), "change": c}
                        for j, c in changes]}
    return report


def format_report(report: dict[str, Any]) -> str:
    """Plain text for a terminal."""
    d = report["dictionary"]
    lines = [(f"feature {report['feature']} of {d['architecture']} dictionary "
              f"{d['d_in']}x{d['d_sae']} at {d['hook_name'] or '?'} ({d['model_name'] or '?'})"),
             (f"decoder norm {report['decoder_norm']:.4g}, encoder bias "
              f"{report['encoder_bias']:.4g}")]
    if "logit_lens" in report:
        lens = report["logit_lens"]
        if lens["removed"]:
            lines.append("projected out (never-produced tokens): "
                         + ", ".join(repr(t["token"]) for t in lens["removed"]))
        lines.append("logit lens, top:    " + "  ".join(f"{t['token']!r} {t['logit']:.3g}"
                                                        for t in lens["top"]))
        lines.append("logit lens, bottom: " + "  ".join(f"{t['token']!r} {t['logit']:.3g}"
                                                        for t in lens["bottom"]))
    if "stats" in report:
        s = report["stats"]
        lines.append(f"fires on {100 * s['frequency']:.3g}% of {s['n_tokens']} tokens "
                     f"({s['n_contexts']} contexts), max activation {s['max_activation']:.4g}")
        lines.append("top examples:")
        lines += [f"  {e['activation']:8.3f}  {e['text']}" for e in report["top_examples"]]
        lines.append("uniform examples:")
        for label, exs in report["uniform_examples"].items():
            lines.append(f"  bin {label}:")
            lines += [f"    {e['activation']:8.3f}  {e['text']}" for e in exs]
    if "ablated_text" in report:
        ab = report["ablated_text"]
        lines.append(f"ablated text (activation {ab['activation']:.4g} at "
                     f"{ab['example']['text']}):")
        lines += [f"  drop {c['position']:4d} {c['token']!r:>16}: {c['change']:+.4g}"
                  for c in ab["changes"]]
    return "\n".join(lines)
