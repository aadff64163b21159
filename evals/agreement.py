"""How far a judge agrees with people, and judge rates corrected by human labels (pure functions).

Inputs are plain sequences: a judge verdict per item as ``True``/``False``/``None`` (None =
unscored: excluded from every statistic and counted), human labels as booleans, and the judge's
P(yes) per item where it has one (for the AUC).

The correction is prediction-powered inference with power tuning (PPI++, Angelopoulos, Duchi &
Zrnic, 2023): the judge's positive rate on all answers, weighted by lambda, plus the mean
human-minus-lambda-judge difference on the human-labelled ones,

    theta = lambda mean_all(judge) + mean_labelled(human - lambda judge),
    var   = lambda^2 var(judge) / N + var(human - lambda judge) / n,

a 95% interval theta +- 1.96 sqrt(var) that is valid whatever the judge's bias. lambda = 1 is
plain PPI, lambda = 0 the humans' own rate; the tuned lambda makes the interval narrower than
the humans' own whenever the judge tracks them, and never wider. The labelled rows must be a random
sample of all rows (``truthsteer spotcheck sample`` draws one, stratified: pass its weights).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054


def _as_verdicts(judge: Sequence[bool | None]) -> tuple[np.ndarray, np.ndarray]:
    """(values as float with 0/1, mask of scored) from True/False/None verdicts."""
    scored = np.array([v is not None and not (isinstance(v, float) and math.isnan(v))
                       for v in judge], dtype=bool)
    values = np.array([float(bool(v)) if s else np.nan for v, s in zip(judge, scored)])
    return values, scored


def confusion(judge: Sequence[bool], human: Sequence[bool]) -> dict[str, int]:
    """Counts of (judge, human) pairs: tp = both yes, fp = judge yes / human no, ..."""
    j = np.asarray(judge, dtype=bool)
    h = np.asarray(human, dtype=bool)
    return {"tp": int((j & h).sum()), "fp": int((j & ~h).sum()),
            "fn": int((~j & h).sum()), "tn": int((~j & ~h).sum())}


def cohen_kappa(judge: Sequence[bool], human: Sequence[bool]) -> float:
    """Cohen's kappa of two binary raters (scikit-learn); NaN with no items, 0 when chance
    agreement is 1 (both raters constant and equal: no information)."""
    from sklearn.metrics import cohen_kappa_score

    j = np.asarray(judge, dtype=bool)
    h = np.asarray(human, dtype=bool)
    if len(j) == 0:
        return float("nan")
    if len(np.unique(np.concatenate([j, h]))) == 1:
        return 0.0
    return float(cohen_kappa_score(j, h, labels=[False, True]))


def auc(scores: Sequence[float], human: Sequence[bool]) -> float:
    """Area under the ROC curve (scikit-learn; ties count half); NaN if one class is absent."""
    from sklearn.metrics import roc_auc_score

    h = np.asarray(human, dtype=bool)
    if h.all() or not h.any():
        return float("nan")
    return float(roc_auc_score(h, np.asarray(scores, dtype=float)))


def weighted_mean_ci(values: np.ndarray, weights: np.ndarray | None = None
                     ) -> tuple[float, float]:
    """(mean, 95% half-width) of ``values``; weighted when ``weights`` is given (normalised)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if weights is None:
        mean = float(v.mean())
        half = Z95 * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
        return mean, half
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    mean = float((w * v).sum())
    if len(v) < 2:
        return mean, float("nan")
    # linearised (sandwich) variance of a weighted mean; equals var/n for equal weights and is
    # conservative for a stratified sample (it ignores the gain from stratifying)
    var = float((w ** 2 * (v - mean) ** 2).sum()) * len(v) / (len(v) - 1)
    return mean, Z95 * math.sqrt(var)


@dataclass(frozen=True)
class Agreement:
    """Agreement of a judge with people on the items both scored."""

    n: int
    n_unscored: int
    accuracy: float
    kappa: float
    auc: float
    judge_rate: float
    human_rate: float
    bias: float
    bias_ci: float
    tp: int
    fp: int
    fn: int
    tn: int

    def to_dict(self) -> dict:
        return asdict(self)


def agreement(judge: Sequence[bool | None], human: Sequence[bool],
              p_yes: Sequence[float | None] | None = None) -> Agreement:
    """Accuracy, kappa, confusion, AUC (from ``p_yes`` where every scored item has one) and bias.

    bias = judge positive rate - human positive rate over the scored items, with the 95%
    half-width of the paired difference's mean.
    """
    values, scored = _as_verdicts(judge)
    h = np.asarray(human, dtype=bool)
    if len(h) != len(values):
        raise ValueError(f"{len(values)} judge verdicts but {len(h)} human labels")
    j = values[scored].astype(bool)
    hs = h[scored]
    c = confusion(j, hs)
    n = int(scored.sum())
    area = float("nan")
    if p_yes is not None:
        p = [p_yes[i] for i in np.flatnonzero(scored)]
        if p and all(x is not None for x in p):
            area = auc(np.asarray(p, dtype=float), hs)
    bias, bias_ci = weighted_mean_ci(j.astype(float) - hs.astype(float))
    return Agreement(
        n=n, n_unscored=int((~scored).sum()),
        accuracy=float((j == hs).mean()) if n else float("nan"),
        kappa=cohen_kappa(j, hs), auc=area,
        judge_rate=float(j.mean()) if n else float("nan"),
        human_rate=float(hs.mean()) if n else float("nan"),
        bias=bias, bias_ci=bias_ci, **c)


def agreement_by_group(judge: Sequence[bool | None], human: Sequence[bool],
                       groups: Sequence[Hashable],
                       p_yes: Sequence[float | None] | None = None) -> dict[Hashable, Agreement]:
    """``agreement`` per group key (e.g. configuration / cell_id), plus ``"all"``."""
    out: dict[Hashable, Agreement] = {"all": agreement(judge, human, p_yes)}
    for g in sorted(set(groups), key=str):
        idx = [i for i, x in enumerate(groups) if x == g]
        out[g] = agreement([judge[i] for i in idx], [human[i] for i in idx],
                           None if p_yes is None else [p_yes[i] for i in idx])
    return out


@dataclass(frozen=True)
class CorrectedRate:
    """A judge's positive rate and its prediction-powered correction from human labels."""

    judge_rate: float
    corrected: float
    ci: float  # 95% half-width
    n_all: int
    n_labelled: int
    n_unscored: int  # judge verdicts missing, on all rows plus labelled rows

    @property
    def low(self) -> float:
        return self.corrected - self.ci

    @property
    def high(self) -> float:
        return self.corrected + self.ci

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self, what: str = "true") -> str:
        return (f"judge: {self.judge_rate:.0%} {what}; corrected: {self.corrected:.0%} "
                f"± {self.ci:.0%} (n={self.n_labelled} human labels)")


def power_tuning_lambda(judge_all: np.ndarray, judge_lab: np.ndarray, human_lab: np.ndarray,
                        weights: np.ndarray | None = None) -> float:
    """PPI++'s variance-minimising weight of the judge (Angelopoulos, Duchi & Zrnic 2023,
    "PPI++", eq. for the mean; as ``ppi_py``'s ``_calc_lam_glm``), clipped to [0, 1]:

        lambda = Cov_n(w h, w j) / ((1 + n / N) Var(w j on labelled ++ j on all)),

    0 when the judge's verdicts do not vary (a constant judge says nothing)."""
    n, big_n = len(human_lab), len(judge_all)
    w = np.ones(n) if weights is None else weights / weights.sum() * n
    theta = judge_all.mean() + (w * (human_lab - judge_lab)).mean()
    g, g_hat = w * (human_lab - theta), w * (judge_lab - theta)
    cov = ((g - g.mean()) * (g_hat - g_hat.mean())).sum() / n
    var = float(np.var(np.concatenate([g_hat, judge_all - theta]), ddof=1))
    if var <= 0:
        return 0.0
    return float(np.clip(cov / ((1 + n / big_n) * var), 0.0, 1.0))


def corrected_rate(judge_all: Sequence[bool | None], judge_labelled: Sequence[bool | None],
                   human_labelled: Sequence[bool],
                   weights: Sequence[float] | None = None, lam: float | None = None
                   ) -> CorrectedRate:
    """Prediction-powered estimate of the human positive rate over all answers.

    ``judge_all``: the judge's verdict on every answer; ``judge_labelled`` / ``human_labelled``:
    the judge's and a person's verdicts on the labelled sample. ``weights`` (optional, per
    labelled item) undo a stratified sample's unequal inclusion probabilities (weight = stratum
    size / stratum sample size). Unscored verdicts are dropped and counted.

    ``lam`` weighs the judge (PPI++): 1 is plain PPI, 0 the labels alone (the classical
    interval). None (the default) tunes it (:func:`power_tuning_lambda`) and keeps the labels-
    alone interval whenever the tuned one would be wider, so a weak judge never widens the
    interval; with fewer than two labelled items it cannot be tuned and plain PPI is used.
    """
    all_v, all_s = _as_verdicts(judge_all)
    lab_v, lab_s = _as_verdicts(judge_labelled)
    h = np.asarray(human_labelled, dtype=float)
    if len(h) != len(lab_v):
        raise ValueError(f"{len(lab_v)} labelled judge verdicts but {len(h)} human labels")
    f_all = all_v[all_s]
    h, f_lab = h[lab_s], lab_v[lab_s]
    w = None if weights is None else np.asarray(weights, dtype=float)[lab_s]
    n_unscored = int((~all_s).sum() + (~lab_s).sum())
    if len(f_all) == 0 or len(h) == 0:
        return CorrectedRate(float(f_all.mean()) if len(f_all) else float("nan"), float("nan"),
                             float("nan"), len(f_all), len(h), n_unscored)
    rate = float(f_all.mean())

    def estimate(lam: float) -> tuple[float, float]:
        var_all = float((lam * f_all).var(ddof=1)) / len(f_all) if len(f_all) > 1 else 0.0
        rectifier, rect_half = weighted_mean_ci(h - lam * f_lab, w)
        var_rect = (rect_half / Z95) ** 2 if math.isfinite(rect_half) else float("nan")
        return lam * rate + rectifier, Z95 * math.sqrt(var_all + var_rect)

    if lam is not None:
        corrected, ci = estimate(lam)
    elif len(h) < 2:
        corrected, ci = estimate(1.0)
    else:
        tuned = estimate(power_tuning_lambda(f_all, f_lab, h, w))
        labels_only = estimate(0.0)
        corrected, ci = tuned if not tuned[1] > labels_only[1] else labels_only
    return CorrectedRate(rate, corrected, ci, len(f_all), len(h), n_unscored)


def corrected_rate_by_group(judge_all: Sequence[bool | None], groups_all: Sequence[Hashable],
                            judge_labelled: Sequence[bool | None],
                            human_labelled: Sequence[bool], groups_labelled: Sequence[Hashable],
                            weights: Sequence[float] | None = None
                            ) -> dict[Hashable, CorrectedRate]:
    """``corrected_rate`` per group (e.g. per configuration), plus ``"all"`` over every row."""
    out = {"all": corrected_rate(judge_all, judge_labelled, human_labelled, weights)}
    for g in sorted(set(groups_all), key=str):
        ia = [i for i, x in enumerate(groups_all) if x == g]
        il = [i for i, x in enumerate(groups_labelled) if x == g]
        out[g] = corrected_rate([judge_all[i] for i in ia], [judge_labelled[i] for i in il],
                                [human_labelled[i] for i in il],
                                None if weights is None else [weights[i] for i in il])
    return out
