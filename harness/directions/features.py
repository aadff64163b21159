"""Truthfulness-feature search: which dictionary features separate true from false answers.

Two rankings, both computed on *search* questions and re-measured on *held-out* questions (a
seeded split by question), so a feature is only called confirmed when the held-out questions
agree:

* **effect size**: per text "Q: ...\\nA: <answer>", a feature's mean activation over the answer
  tokens; Cohen's d between correct and incorrect answers (pooled std). Confirmed when the
  held-out d has the same sign and Welch's t-test on held-out texts gives p < alpha / top
  (Bonferroni over the features listed).
* **attribution**: per question, the metric mean_true log p(answer) - mean_false log p(answer)
  (answer-token log-probabilities given "Q: ...\\nA:"); a feature's attribution is
  sum over positions of activation x (gradient of the metric . the feature's decoder vector),
  i.e. the first-order effect of removing the feature (attribution patching). Gradients come
  from the TransformerLens bridge (a weight-sharing twin of the model). Confirmed when the
  held-out mean has the same sign and a one-sample t-test over held-out questions gives
  p < alpha / top.

Any listed feature can then be swept as ``feature:DIR:ID``. Inspection summaries (top examples
among the contrast texts, logit lens of the decoder row) come from ``dictionaries.inspect``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evals.io import progress as progress_bar
from evals.truthfulqa import split_questions
from harness.config import ConfigError
from harness.directions.contrast import ContrastSet, contrast_set
from harness.steering import hooks


@dataclass(frozen=True)
class FeatureSearchConfig:
    top: int = 20
    heldout_fraction: float = 0.5
    seed: int = 0
    attribution: bool = True
    alpha: float = 0.05
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.top < 1:
            raise ConfigError(f"--top {self.top} must be >= 1")
        if not 0 < self.heldout_fraction < 1:
            raise ConfigError(f"--heldout-fraction {self.heldout_fraction} must be in (0, 1)")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size} must be >= 1")


def effect_sizes(acts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cohen's d per column of ``acts`` [n, F]: (mean_true - mean_false) / pooled std (0 when
    both groups are constant)."""
    x, y = np.asarray(acts, dtype=np.float64), np.asarray(labels)
    a, b = x[y == 1], x[y == 0]
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("effect sizes need at least 2 correct and 2 incorrect answers")
    pooled = np.sqrt(((len(a) - 1) * a.var(0, ddof=1) + (len(b) - 1) * b.var(0, ddof=1))
                     / (len(a) + len(b) - 2))
    diff = a.mean(0) - b.mean(0)
    return np.divide(diff, pooled, out=np.zeros_like(diff), where=pooled > 0)


def welch_pvalues(acts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Two-sided Welch t-test p-value per column (1 where both groups are constant)."""
    from scipy import stats

    x, y = np.asarray(acts, dtype=np.float64), np.asarray(labels)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns: p is set to 1
        p = stats.ttest_ind(x[y == 1], x[y == 0], axis=0, equal_var=False).pvalue
    return np.nan_to_num(p, nan=1.0)


def one_sample_pvalues(values: np.ndarray) -> np.ndarray:
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_1samp(np.asarray(values, dtype=np.float64), 0.0, axis=0).pvalue
    return np.nan_to_num(p, nan=1.0)


def _pad_right(seqs: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and lengths: causal attention means real tokens never see the pads."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(list(s))
    return ids.to(device), torch.tensor([len(s) for s in seqs])


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[b, p, heads, d_head] -> [b, p, heads*d_head] (z-dictionaries); others unchanged."""
    return x.reshape(*x.shape[:2], -1) if x.ndim == 4 else x


def answer_mask(contrast: ContrastSet, rows: Sequence[int], width: int) -> torch.Tensor:
    """[b, width] True on each text's answer tokens."""
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, i in enumerate(rows):
        mask[r, contrast.answer_starts[i]:len(contrast.token_ids[i])] = True
    return mask


@torch.inference_mode()
def text_feature_stats(model, sae, contrast: ContrastSet, hook: str, batch_size: int = 16,
                       progress: bool = True) -> dict[str, torch.Tensor]:
    """Per text and feature: ``mean`` over answer tokens, ``max`` over the text (excluding
    position 0) and its position ``argmax``; each [n_texts, d_sae]."""
    n, f = len(contrast), sae.d_sae
    out = {"mean": torch.zeros(n, f), "max": torch.zeros(n, f),
           "argmax": torch.zeros(n, f, dtype=torch.long)}
    with hooks(model, record=[hook]) as state:
        for start in progress_bar(range(0, n, batch_size), desc="feature activations",
                                  unit="batch", disable=not progress, leave=False):
            rows = list(range(start, min(n, start + batch_size)))
            ids, lengths = _pad_right([contrast.token_ids[i] for i in rows],
                                      model.tokenizer.pad_token_id, model.device)
            state.records[hook].clear()
            state.reset()
            model.hf_model(input_ids=ids, use_cache=False)
            feats = sae.encode(_flat(state.records[hook][0]).float().to(sae.W_enc.device)).cpu()
            valid = torch.arange(ids.shape[1])[None] < lengths[:, None]
            valid[:, 0] = False
            ans = answer_mask(contrast, rows, ids.shape[1])
            out["mean"][rows] = (feats * ans[..., None]).sum(1) / ans.sum(1, keepdim=True)
            masked = feats.masked_fill(~valid[..., None], float("-inf"))
            mx = masked.max(dim=1)
            out["max"][rows], out["argmax"][rows] = mx.values.clamp(min=0), mx.indices
    return out


def question_attributions(model, sae, contrast: ContrastSet, hook: str, batch_size: int = 8,
                          progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(question ids [Q], attribution [Q, d_sae]) of the metric mean_true log p - mean_false
    log p per question (see the module docstring)."""
    bridge = model.bridge
    w_dec = sae.W_dec.detach().float()
    if sae.rescale_acts_by_decoder_norm:
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    qids = np.unique(contrast.question_ids)
    counts = {(q, lab): int(((contrast.question_ids == q) & (contrast.labels == lab)).sum())
              for q in qids for lab in (0, 1)}
    per_text = torch.zeros(len(contrast), sae.d_sae)
    for start in progress_bar(range(0, len(contrast), batch_size), desc="feature attribution",
                              unit="batch", disable=not progress, leave=False):
        rows = list(range(start, min(len(contrast), start + batch_size)))
        ids, lengths = _pad_right([contrast.token_ids[i] for i in rows],
                                  model.tokenizer.pad_token_id, model.device)
        store: list[torch.Tensor] = []

        def grab(act, hook=None, store=store):
            leaf = act.detach().requires_grad_(True)
            store.append(leaf)
            return leaf
        with torch.enable_grad():
            logits = bridge.run_with_hooks(ids, fwd_hooks=[(hook, grab)])
            logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(
                -1, ids[:, 1:, None]).squeeze(-1)                       # [b, p-1]
            ans = answer_mask(contrast, rows, ids.shape[1])[:, 1:].to(logp.device)
            total = (logp * ans).sum()
            (grad,) = torch.autograd.grad(total, store[0])
        x = _flat(store[0].detach()).float().to(w_dec.device)
        g = _flat(grad).float().to(w_dec.device)
        with torch.no_grad():
            feats = sae.encode(x)                                         # [b, p, F]
            # every real position counts (position 0 too: its features shape the answer)
            valid = (torch.arange(ids.shape[1])[None] < lengths[:, None]).to(feats.device)
            per_text[rows] = (feats * (g @ w_dec.T) * valid[..., None]).sum(1).cpu()
    coef = torch.tensor([(1.0 if lab == 1 else -1.0) / counts[(int(q), int(lab))]
                         for q, lab in zip(contrast.question_ids, contrast.labels)])
    out = np.zeros((len(qids), sae.d_sae))
    index = {int(q): i for i, q in enumerate(qids)}
    weighted = (per_text * coef[:, None]).numpy()
    for t, q in enumerate(contrast.question_ids):
        out[index[int(q)]] += weighted[t]
    return qids, out


def _inspect(model, sae, contrast: ContrastSet, stats: dict[str, torch.Tensor],
             feature: int, n_examples: int = 3, n_tokens: int = 8) -> dict[str, Any]:
    from dictionaries.inspect import format_example, logit_lens, unembedding

    tok = model.tokenizer
    col = stats["max"][:, feature]
    examples = []
    for i in col.argsort(descending=True)[:n_examples].tolist():
        if col[i] <= 0:
            break
        tokens = torch.tensor(contrast.token_ids[i])
        examples.append({"activation": float(col[i]), "label": int(contrast.labels[i]),
                         "text": format_example(tok, tokens, int(stats["argmax"][i, feature]),
                                                before=24, after=6)})
    lens = {}
    if sae.d_in == model.d_model:  # residual-width dictionaries only
        w_u, norm_w = unembedding(model.hf_model)
        if norm_w is None:
            norm = getattr(getattr(model.hf_model, "model", None), "norm", None)
            norm_w = None if norm is None else norm.weight.detach().float()
        ll = logit_lens(sae.feature_directions()[feature].cpu(), w_u.cpu(), n_tokens,
                        None if norm_w is None else norm_w.cpu())
        lens = {"promotes": [tok.decode([i]) for i, _ in ll.top],
                "suppresses": [tok.decode([i]) for i, _ in ll.bottom]}
    return {"examples": examples, "logit_lens": lens}


def search_features(model, sae, questions, cfg: FeatureSearchConfig = FeatureSearchConfig(),
                    hook: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Rank ``sae``'s features on ``questions`` (see the module docstring); JSON-able result."""
    hook = hook or sae.cfg.hook_name
    if not hook:
        raise ConfigError("the dictionary records no hook_name; pass --hook")
    from harness.steering import resolve_hook

    site = resolve_hook(model, hook)
    if site.width * site.n_heads != sae.d_in:
        raise ConfigError(f"dictionary d_in={sae.d_in} does not fit hook {hook} "
                          f"(width {site.width * site.n_heads})")
    search_q, held_q = split_questions([q.id for q in questions], cfg.heldout_fraction, cfg.seed)
    contrast = contrast_set(questions, model.tokenizer)
    stats = text_feature_stats(model, sae, contrast, hook, cfg.batch_size, progress)
    acts, y = stats["mean"].numpy(), contrast.labels
    s_rows, h_rows = contrast.subset(search_q), contrast.subset(held_q)
    d_s, d_h = effect_sizes(acts[s_rows], y[s_rows]), effect_sizes(acts[h_rows], y[h_rows])
    p_h = welch_pvalues(acts[h_rows], y[h_rows])
    k = min(cfg.top, sae.d_sae)
    threshold = cfg.alpha / k

    def row(fid: int) -> dict[str, Any]:
        return {"feature": fid, "d_search": float(d_s[fid]), "d_heldout": float(d_h[fid]),
                "p_heldout": float(p_h[fid]),
                "mean_true": float(acts[s_rows][y[s_rows] == 1, fid].mean()),
                "mean_false": float(acts[s_rows][y[s_rows] == 0, fid].mean())}

    by_effect = []
    for fid in np.argsort(-np.abs(d_s), kind="stable")[:k].tolist():
        r = row(fid)
        r["confirmed"] = bool(np.sign(d_h[fid]) == np.sign(d_s[fid]) != 0 and
                              p_h[fid] < threshold)
        by_effect.append(r)
    result: dict[str, Any] = {"hook": hook, "search_question_ids": search_q,
                              "heldout_question_ids": held_q, "n_texts": len(contrast),
                              "by_effect": by_effect, "by_attribution": []}
    if cfg.attribution:
        qids, attr = question_attributions(model, sae, contrast, hook, max(1, cfg.batch_size // 2),
                                           progress)
        a_s, a_h = attr[np.isin(qids, search_q)], attr[np.isin(qids, held_q)]
        m_s, m_h, p_a = a_s.mean(0), a_h.mean(0), one_sample_pvalues(a_h)
        for fid in np.argsort(-np.abs(m_s), kind="stable")[:k].tolist():
            r = row(fid)
            r.update(attr_search=float(m_s[fid]), attr_heldout=float(m_h[fid]),
                     p_attr_heldout=float(p_a[fid]),
                     confirmed=bool(np.sign(m_h[fid]) == np.sign(m_s[fid]) != 0 and
                                    p_a[fid] < threshold))
            result["by_attribution"].append(r)
    for r in result["by_effect"] + result["by_attribution"]:
        r.update(_inspect(model, sae, contrast, stats, r["feature"]))
    return result


def format_search(result: dict[str, Any], dictionary: str) -> str:
    """Human-readable tables of a search result (for the CLI)."""
    head = (f"hook {result['hook']}: {len(result['search_question_ids'])} search / "
            f"{len(result['heldout_question_ids'])} held-out questions, {result['n_texts']} texts")
    lines = [head]
    for key, title in (("by_effect", "effect size (Cohen's d, true - false)"),
                       ("by_attribution", "attribution (d metric / d feature, summed)")):
        rows = result[key]
        if not rows:
            continue
        header = (f"{'feature':>8} {'search':>8} {'heldout':>8} {'p_held':>8} ok  "
                  f"{'mean_t':>7} {'mean_f':>7}  promotes")
        lines += ["", f"top features by {title}:", header]
        for r in rows:
            s, h, p = ((r["attr_search"], r["attr_heldout"], r["p_attr_heldout"])
                       if key == "by_attribution" else (r["d_search"], r["d_heldout"],
                                                        r["p_heldout"]))
            lens = ", ".join(repr(t) for t in r["logit_lens"].get("promotes", [])[:5])
            lines.append(f"{r['feature']:>8} {s:>8.3f} {h:>8.3f} {p:>8.1e} "
                         f"{'yes' if r['confirmed'] else 'no ':3} {r['mean_true']:>7.3f} "
                         f"{r['mean_false']:>7.3f}  {lens}")
            for ex in r["examples"][:2]:
                lines.append(f"{'':>10}{ex['activation']:.2f} ({'true' if ex['label'] else 'false'}) "
                             f"{ex['text'][:110]}")
        lines.append(f"  sweep one with: feature:{dictionary}:<feature>")
    return "\n".join(lines)
