import math

import numpy as np
import pytest

from evals.agreement import (
    Z95,
    agreement,
    agreement_by_group,
    auc,
    cohen_kappa,
    confusion,
    corrected_rate,
    corrected_rate_by_group,
    power_tuning_lambda,
    weighted_mean_ci,
)


def _pairs(tp, fp, fn, tn):
    judge = [True] * tp + [True] * fp + [False] * fn + [False] * tn
    human = [True] * tp + [False] * fp + [True] * fn + [False] * tn
    return judge, human


def test_cohen_kappa__hand_computed_confusion():
    # po = 35/50 = .7; judge yes .5, human yes .6 -> pe = .5*.6 + .5*.4 = .5; kappa = .2/.5
    judge, human = _pairs(20, 5, 10, 15)
    assert confusion(judge, human) == {"tp": 20, "fp": 5, "fn": 10, "tn": 15}
    assert cohen_kappa(judge, human) == pytest.approx(0.4)


def test_cohen_kappa__perfect_chance_and_constant():
    assert cohen_kappa([True, False, True], [True, False, True]) == pytest.approx(1.0)
    assert cohen_kappa([True, True, False, False], [True, False, True, False]) == pytest.approx(0.0)
    assert cohen_kappa([True] * 4, [True] * 4) == 0.0  # chance agreement 1: no information
    assert math.isnan(cohen_kappa([], []))


def test_auc__known_values_and_ties():
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert auc([0.9, 0.1, 0.2], [True, False, False]) == pytest.approx(1.0)
    assert math.isnan(auc([0.1, 0.2], [True, True]))


def test_agreement__unscored_excluded_and_counted():
    judge = [True, None, False, True, None]
    human = [True, True, False, False, False]
    a = agreement(judge, human, p_yes=[0.9, None, 0.2, 0.6, None])
    assert (a.n, a.n_unscored) == (3, 2)
    assert a.accuracy == pytest.approx(2 / 3)
    assert (a.tp, a.fp, a.fn, a.tn) == (1, 1, 0, 1)
    assert a.auc == pytest.approx(1.0)  # scores rank the one human-no below the human-yes
    assert a.judge_rate == pytest.approx(2 / 3) and a.human_rate == pytest.approx(1 / 3)


def test_agreement__bias_and_its_interval_by_hand():
    # differences judge - human = [0, 1, 0, 0]: mean .25, sd .5 -> half-width 1.96 * .5 / 2
    a = agreement([True, True, False, False], [True, False, False, False])
    assert a.bias == pytest.approx(0.25)
    assert a.bias_ci == pytest.approx(Z95 * 0.5 / 2)


def test_agreement__auc_missing_when_any_p_yes_missing():
    a = agreement([True, False], [True, False], p_yes=[0.9, None])
    assert math.isnan(a.auc)


def test_agreement_by_group__splits_and_keeps_all():
    judge = [True, False, True, True]
    human = [True, False, False, True]
    out = agreement_by_group(judge, human, ["a", "a", "b", "b"])
    assert out["all"].n == 4 and out["a"].accuracy == 1.0 and out["b"].accuracy == 0.5


def test_corrected_rate__tiny_example_by_hand():
    judge_all = [1, 1, 1, 0, 0, 1, 0, 1, 1, 0]  # rate .6
    judge_lab = [True, True, False, False]
    human_lab = [False, False, False, True]  # human - judge = [-1, -1, 0, 1]: mean -.25
    r = corrected_rate([bool(x) for x in judge_all], judge_lab, human_lab, lam=1.0)  # plain PPI
    assert r.judge_rate == pytest.approx(0.6)
    assert r.corrected == pytest.approx(0.35)
    var = (10 * 0.24 / 9) / 10 + (2.75 / 3) / 4
    assert r.ci == pytest.approx(Z95 * math.sqrt(var))
    assert (r.n_all, r.n_labelled, r.n_unscored) == (10, 4, 0)
    assert "corrected: 35%" in r.describe()


def test_corrected_rate__unscored_dropped_and_counted():
    r = corrected_rate([True, None, False, True], [True, None], [False, True])
    assert (r.n_all, r.n_labelled, r.n_unscored) == (3, 1, 2)
    assert r.corrected == pytest.approx(2 / 3 - 1)


def test_corrected_rate__stratified_weights_give_the_stratified_estimator():
    # 80 judge-yes answers, 20 judge-no; sample 4 of each stratum
    judge_all = [True] * 80 + [False] * 20
    judge_lab = [True] * 4 + [False] * 4
    human_lab = [True, True, True, False] + [True, False, False, False]
    weights = [80 / 4] * 4 + [20 / 4] * 4
    r = corrected_rate(judge_all, judge_lab, human_lab, weights, lam=1.0)  # plain PPI
    assert r.corrected == pytest.approx(0.8 * 0.75 + 0.2 * 0.25)


def test_weighted_mean_ci__equal_weights_match_unweighted():
    v = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    assert weighted_mean_ci(v, np.ones(5)) == pytest.approx(weighted_mean_ci(v))


def test_corrected_rate__ci_covers_truth_about_95_percent():
    """A biased judge (says yes too often): the corrected interval still covers the true rate."""
    rng = np.random.default_rng(0)
    p_true, n_all, n_lab, sims = 0.4, 1000, 80, 600
    covered = naive_covered = 0
    for _ in range(sims):
        human = rng.random(n_all) < p_true
        judge = np.where(human, rng.random(n_all) < 0.9, rng.random(n_all) < 0.25)
        lab = rng.choice(n_all, n_lab, replace=False)
        r = corrected_rate(list(judge), list(judge[lab]), list(human[lab]))
        covered += r.low <= p_true <= r.high
        half = Z95 * math.sqrt(judge.mean() * (1 - judge.mean()) / n_all)
        naive_covered += abs(judge.mean() - p_true) <= half
    assert 0.92 <= covered / sims <= 0.98
    assert naive_covered / sims < 0.2  # the judge's own rate is off: what the correction is for


def test_corrected_rate_by_group__per_group_and_all():
    out = corrected_rate_by_group([True, False, True, True], ["a", "a", "b", "b"],
                                  [True, True], [False, True], ["a", "b"])
    assert out["a"].corrected == pytest.approx(0.5 - 1)
    assert out["b"].corrected == pytest.approx(1.0)
    assert out["all"].n_all == 4


def _simulated(rng, n_all: int, n_lab: int, judge_skill: float):
    """Human labels at rate .4; a judge right with probability ``judge_skill``."""
    human = rng.random(n_all) < 0.4
    judge = np.where(rng.random(n_all) < judge_skill, human, ~human)
    lab = rng.choice(n_all, n_lab, replace=False)
    return judge, human, lab


def test_corrected_rate__ppi_plus_plus_matches_ppi_python():
    ppi_py = pytest.importorskip("ppi_py")  # the test extra: pip install -e ".[test]"
    rng = np.random.default_rng(1)
    for skill in (0.95, 0.75, 0.55):
        judge, human, lab = _simulated(rng, 3000, 300, skill)
        r = corrected_rate(list(judge), list(judge[lab]), list(human[lab]))
        y, yhat, yhat_all = (a.astype(float) for a in (human[lab], judge[lab], judge))
        ref = float(np.ravel(ppi_py.ppi_mean_pointestimate(y, yhat, yhat_all))[0])
        lo, hi = ppi_py.ppi_mean_ci(y, yhat, yhat_all, alpha=0.05)
        labels_only = corrected_rate(list(judge), list(judge[lab]), list(human[lab]), lam=0.0)
        if r.ci < labels_only.ci:  # the tuned interval was kept: it is ppi_py's
            assert r.corrected == pytest.approx(ref, abs=1e-12)
            # ppi_py's variances divide by n, ours by n - 1
            assert r.ci == pytest.approx(float(np.ravel(hi - lo)[0]) / 2, rel=5e-3)
        lam = power_tuning_lambda(yhat_all, yhat, y)
        plain = float(np.ravel(ppi_py.ppi_mean_pointestimate(y, yhat, yhat_all, lam=lam))[0])
        assert corrected_rate(list(judge), list(judge[lab]), list(human[lab]),
                              lam=lam).corrected == pytest.approx(plain, abs=1e-12)
    assert power_tuning_lambda(yhat_all, yhat, y) < 0.2  # a near-random judge: little weight


def test_corrected_rate__weak_judge_never_widens_the_labels_alone_interval():
    rng = np.random.default_rng(2)
    for skill in (0.5, 0.55, 0.6, 0.8, 0.95):
        judge, human, lab = _simulated(rng, 2000, 100, skill)
        args = (list(judge), list(judge[lab]), list(human[lab]))
        tuned, labels_only, plain = (corrected_rate(*args), corrected_rate(*args, lam=0.0),
                                     corrected_rate(*args, lam=1.0))
        # lambda 0: the classical interval on the labels alone
        h = human[lab].astype(float)
        assert labels_only.corrected == pytest.approx(h.mean())
        assert labels_only.ci == pytest.approx(Z95 * h.std(ddof=1) / math.sqrt(len(h)))
        assert tuned.ci <= labels_only.ci + 1e-12
        if skill <= 0.6:
            assert plain.ci > labels_only.ci  # what plain PPI does with a weak judge
        if skill >= 0.95:
            assert tuned.ci < 0.8 * labels_only.ci  # a good judge still buys a narrower interval
