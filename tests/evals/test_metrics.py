import math

import numpy as np
import pytest

from evals.metrics import (
    NO_COMMENT,
    mc_reference_answers,
    mc_scores,
    mean_ci,
    paired_difference_ci,
    rate_ci,
    wilson_interval,
)


def test_mc_scores__hand_computed():
    # true scores -1 (best), -2; false -1.5, -3
    mc1, mc2, mc3 = mc_scores([-1.0, -2.0], [-1.5, -3.0], best_index=0)
    assert mc1 == 1.0
    # (e^-1 + e^-2) / (e^-1 + e^-2 + e^-1.5 + e^-3) = 0.503214 / 0.776131
    assert mc2 == pytest.approx(0.648363, abs=1e-6)
    assert mc3 == 0.5  # -1 beats max false (-1.5), -2 does not


def test_mc_scores__best_must_beat_every_false_answer():
    mc1, _, mc3 = mc_scores([-1.0, -2.0], [-1.5, -3.0], best_index=1)
    assert mc1 == 0.0 and mc3 == 0.5
    # a tie is not a win (the original uses >)
    assert mc_scores([-1.5], [-1.5], 0)[0] == 0.0


def test_mc_scores__long_answers_do_not_underflow():
    shifted = mc_scores([-2001.0, -2002.0], [-2001.5, -2003.0], 0)
    assert shifted[1] == pytest.approx(0.648363, abs=1e-6)
    assert mc_scores([-5000.0], [-1.0], 0)[1] == pytest.approx(0.0, abs=1e-300)


def test_mc_scores__rejects_empty_or_bad_index():
    with pytest.raises(ValueError):
        mc_scores([], [-1.0], 0)
    with pytest.raises(ValueError):
        mc_scores([-1.0], [-1.0], 3)


def test_mc_reference_answers__as_the_original_builds_them():
    ans = mc_reference_answers("Paris", ["Paris", "It is Paris.", "Paris"], ["London", "Rome."])
    assert ans.true == ("Paris.", "It is Paris.", "Paris.")  # periods added, duplicates kept
    assert ans.false == ("London.", "Rome.")
    assert ans.best == "Paris." and ans.best_index == 0
    # best answer missing from the correct list joins the true set
    ans = mc_reference_answers("Berlin", ["Germany's capital"], ["Bonn"])
    assert ans.true[ans.best_index] == "Berlin." and NO_COMMENT not in ans.true
    # "I have no comment." only on request (the original adds it for generative metrics only),
    # and never twice
    assert mc_reference_answers("x", ["y"], ["z"], add_no_comment=True).true == (
        "x.", "y.", NO_COMMENT)
    assert mc_reference_answers("x", ["x"], ["z"], add_no_comment=True).true == ("x.", NO_COMMENT)
    assert mc_reference_answers("x", [NO_COMMENT], ["y"], add_no_comment=True
                                ).true.count(NO_COMMENT) == 1


def test_wilson_interval__hand_computed():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.277535, abs=1e-5)
    lo, hi = wilson_interval(5, 10)
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi == pytest.approx(0.763404, abs=1e-5)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_rate_ci__rate_and_interval():
    rate, lo, hi = rate_ci([1, 0, 1, 1])
    assert rate == 0.75 and lo < 0.75 < hi


def test_mean_ci__t_interval_hand_computed():
    mean, _lo, hi = mean_ci([1.0, 2.0, 3.0])
    # sd 1, se 1/sqrt(3), t(0.975, 2) = 4.302653
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 / math.sqrt(3), abs=1e-5)
    assert math.isnan(mean_ci([1.0])[1])


def test_paired_difference_ci__pairs_and_shapes():
    mean, lo, hi = paired_difference_ci([1.0, 2.0, 3.0], [0.0, 1.0, 1.0])
    assert mean == pytest.approx(4 / 3) and lo < mean < hi
    with pytest.raises(ValueError):
        paired_difference_ci([1.0], np.ones(2))
