"""The quickstart's feature choice: the dictionary feature that best separates true from false
answers on questions held apart from the answered subset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.quickstart.config import QuickstartConfig


def choose_feature(model, dictionary: Path | str, questions, cfg: QuickstartConfig,
                   progress: bool) -> dict[str, Any]:
    """The feature whose activation best separates true from false answers: the feature
    search's effect-size ranking (confirmed on its held-out half when possible), or, where that
    module is absent, Cohen's d of the last-token activation over all the given questions."""
    from dictionaries.hub import load_dictionary

    sae = load_dictionary(dictionary)
    hook = sae.cfg.hook_name or cfg.hook
    out = {"dictionary": str(dictionary.resolve() if isinstance(dictionary, Path) else dictionary),
           "hook": hook,
           "question_ids": [q.id for q in questions]}
    try:
        from harness.directions.features import FeatureSearchConfig, search_features
    except ImportError:
        return out | _last_token_choice(model, sae, hook, questions, progress)
    result = search_features(model, sae, questions, FeatureSearchConfig(
        top=10, attribution=False, seed=cfg.seed), hook, progress=progress)
    rows = result["by_effect"]
    best = next((r for r in rows if r["confirmed"]), rows[0])
    return out | {"feature": best["feature"], "sign": 1 if best["d_search"] >= 0 else -1,
                  "effect_size": best["d_search"], "heldout_effect_size": best["d_heldout"],
                  "heldout_p": best["p_heldout"], "confirmed": best["confirmed"],
                  "method": "feature search: Cohen's d of the mean answer-token activation, "
                            "true vs false answers, re-tested on held-out questions"}


def _last_token_choice(model, sae, hook: str, questions, progress: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from harness.directions.contrast import collect_last_token, contrast_set

    contrast = contrast_set(questions, model.tokenizer)
    acts = collect_last_token(model, contrast.token_ids, [hook], progress=progress)[hook]
    with torch.no_grad():
        f = sae.encode(acts.reshape(len(acts), -1).to(sae.W_enc.device)).double().cpu().numpy()
    y = np.asarray(contrast.labels) == 1
    a, b = f[y], f[~y]
    pooled = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / 2)
    d = np.divide(a.mean(0) - b.mean(0), pooled, out=np.zeros(f.shape[1]), where=pooled > 0)
    best = int(np.argmax(np.abs(d)))
    return {"feature": best, "sign": 1 if d[best] >= 0 else -1, "effect_size": float(d[best]),
            "heldout_effect_size": None, "heldout_p": None, "confirmed": False,
            "method": "Cohen's d of the last-token activation, true vs false answers "
                      "(no held-out check: the feature search module is absent)"}
