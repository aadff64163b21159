"""reports.tables / reports.fingerprint / reports.load on hand-built run directories with planted numbers."""

from __future__ import annotations

import math

import pytest

from evals.agreement import corrected_rate
from evals.errors import InputError
from reports.fingerprint import agreement_summary, fingerprint
from reports.load import load_run
from reports.tables import (
    BEST,
    BOTH,
    Rate,
    choose_examples,
    headline_rows,
    heatmap_grid,
    human_agreement,
)
from tests.reports.conftest import hand_cell, hand_run_info, hand_scores, wilson_by_hand

HOOK1, HOOK2 = "blocks.1.hook_resid_post", "blocks.2.hook_resid_post"
def _build(tmp_path, good_truthful=range(10)):
    """Baseline: truthful on q0-2, informative except q9; q7's score is stale (answer edited),
    q8's truthful verdict is unscored. 'good' (HOOK1 × 4) is truthful on ``good_truthful``;
    HOOK1 × 8 copies the baseline's verdicts; HOOK2 × 4 has no score for q6."""
    run = tmp_path / "run"
    cells = {"baseline": ("none", "none", 0.0), f"d__{HOOK1}__m4": ("d", HOOK1, 4.0),
             f"d__{HOOK1}__m8": ("d", HOOK1, 8.0), f"d__{HOOK2}__m4": ("d", HOOK2, 4.0)}
    answers, verdicts = {}, {}
    for cid, (direction, hook, mag) in cells.items():
        texts = {q: f"{cid} answer {q}" for q in range(10)}
        hand_cell(run, cid, direction, hook, mag, texts,
                  metrics={"mc1": 0.25, "mc1_ci": [0.1, 0.4], "mc2": 0.4 + mag / 100,
                           "kl": mag / 10, "ce": 3.0})
        for q in range(10):
            answers[(cid, q)] = texts[q]
            if cid == f"d__{HOOK1}__m4":
                t = "yes" if q in good_truthful else "no"
            else:
                t = "yes" if q < 3 else "unscored" if q == 8 else "no"
            verdicts[(cid, q)] = (t, "no" if q == 9 else "yes")
    del verdicts[(f"d__{HOOK2}__m4", 6)]
    hand_scores(run, verdicts, answers, stale={("baseline", 7)})
    hand_run_info(run)
    return run


def test_headline_rows__rates_wilson_intervals_and_unscored_counts(tmp_path):
    rows = {r.cell_id: r for r in headline_rows(load_run(_build(tmp_path)))}
    base = rows["baseline"]
    # q7 stale and q8 unscored: 3 truthful of 8 scored; q7 stale: 9 informative scored, 8 yes
    assert base.rates["truthful"] == Rate(3, 8)
    assert base.rates["informative"] == Rate(8, 9)
    assert base.rates[BOTH] == Rate(3, 8)
    assert base.unscored == {"truthful": 2, "informative": 1}
    assert base.rates["truthful"].ci == pytest.approx(wilson_by_hand(3, 8))
    assert Rate(0, 5).ci[0] == 0.0 and Rate(5, 5).ci[1] == 1.0
    assert math.isnan(Rate(0, 0).rate)
    missing = rows[f"d__{HOOK2}__m4"]
    assert missing.unscored == {"truthful": 2, "informative": 1}  # q6 has no score row at all
    assert missing.n_answers == 10


def test_headline_rows__baseline_first_then_direction_layer_magnitude(tmp_path):
    rows = headline_rows(load_run(_build(tmp_path)))
    assert [r.cell_id for r in rows] == ["baseline", f"d__{HOOK1}__m4", f"d__{HOOK1}__m8",
                                         f"d__{HOOK2}__m4"]
    assert rows[0].is_baseline and rows[1].layer == 1 and rows[3].layer == 2


def test_mark_best__highest_true_informative_and_whether_it_clears_the_baseline(tmp_path):
    rows = {r.cell_id: r for r in headline_rows(load_run(_build(tmp_path)))}
    best = rows[f"d__{HOOK1}__m4"]
    assert best.marks[0] == BEST and "clears baseline" in best.marks
    # paired over questions scored in both cells: q0-6 (q7 stale, q8 unscored in the baseline)
    # and q9; the steered cell is true×informative on q0-8, the baseline on q0-2
    diffs = [0, 0, 0, 1, 1, 1, 1, 0]
    assert best.delta_both[0] == pytest.approx(sum(diffs) / len(diffs))
    assert all(BEST not in r.marks for cid, r in rows.items() if cid != best.cell_id)


def test_mark_best__a_win_inside_the_noise_is_not_called_a_win(tmp_path):
    # two more truthful answers than the baseline (q3 in cross-fitting fold A, q5 in fold B):
    # chosen on both folds, so crowned, but the paired interval spans 0
    rows = {r.cell_id: r for r in headline_rows(load_run(_build(tmp_path, (0, 1, 2, 3, 5))))}
    best = rows[f"d__{HOOK1}__m4"]
    assert best.marks[0] == BEST
    assert "within baseline's noise" in best.marks
    # one more (q3, fold A only): the copy of the baseline at HOOK2 (q6 unscored) wins fold B,
    # so the folds disagree and nothing is crowned, let alone called a win
    rows = headline_rows(load_run(_build(tmp_path / "one", range(4))))
    assert not any(BEST in r.marks or "clears baseline" in r.marks for r in rows)


def test_corrected_rates__prediction_powered_from_weighted_labels(tmp_path):
    run_dir = _build(tmp_path)
    (run_dir / "labels").mkdir()
    # people disagree with the judge on q1 (judge yes, human no) and q4 (judge no, human yes)
    labels = {1: ("no", "yes", 2.0), 2: ("yes", "yes", 2.0), 4: ("yes", "yes", 3.0),
              5: ("no", "", 3.0)}
    (run_dir / "labels" / "human.csv").write_text(
        "id,cell_id,question_id,truthful,informative,weight\n" + "".join(
            f"baseline/{q},baseline,{q},{t},{i},{w}\n" for q, (t, i, w) in labels.items()))
    row = next(r for r in headline_rows(load_run(run_dir)) if r.cell_id == "baseline")
    c = row.corrected["truthful"]
    judge_all = [1, 1, 1, 0, 0, 0, 0, 0]          # the 8 scored baseline verdicts
    diff = {1: 0 - 1, 2: 1 - 1, 4: 1 - 0, 5: 0 - 0}
    w = {1: 2.0, 2: 2.0, 4: 3.0, 5: 3.0}
    rect = sum(diff[q] * w[q] for q in diff) / sum(w.values())
    assert c.judge_rate == pytest.approx(3 / 8)
    # plain PPI (lambda 1) by hand; the report's PPI++ gives a judge that agrees with people on
    # only 2 of 4 labels no weight (lambda 0): the people's own weighted rate
    judge_lab, human_lab = [True, True, False, False], [False, True, True, False]
    plain = corrected_rate([bool(x) for x in judge_all], judge_lab, human_lab,
                           [w[q] for q in diff], lam=1.0)
    assert plain.corrected == pytest.approx(3 / 8 + rect)
    assert c.corrected == pytest.approx((2.0 * 0 + 2.0 * 1 + 3.0 * 1 + 3.0 * 0) / 10)
    assert c.n_labelled == 4 and c.n_all == len(judge_all)
    assert row.corrected["informative"].n_labelled == 3  # q5's informative label is blank
    stats = human_agreement(load_run(run_dir))
    assert (stats["truthful"].tp, stats["truthful"].fp, stats["truthful"].fn,
            stats["truthful"].tn) == (1, 1, 1, 1)


def test_choose_examples__where_verdicts_changed_most_then_by_id(tmp_path):
    run = load_run(_build(tmp_path))
    rows = headline_rows(run)
    examples = choose_examples(run, rows, 3)
    # the shown configurations: the baseline and d's best (HOOK1 × 4); verdicts change on q3-6
    # (truthful no -> yes) and on q8 only versus an unscored baseline verdict (not counted)
    assert [e.question_id for e in examples] == [3, 4, 5]
    assert [a.cell_id for a in examples[0].answers] == ["baseline", f"d__{HOOK1}__m4"]
    assert examples[0].answers[1].judge == (True, True)
    assert choose_examples(run, rows, 3) == examples


def test_heatmap_grid__baseline_fills_the_magnitude_zero_column(tmp_path):
    rows = headline_rows(load_run(_build(tmp_path)))
    hooks, mags, grid = heatmap_grid(rows, "d")
    assert hooks == [HOOK1, HOOK2] and mags == [0.0, 4.0, 8.0]
    assert grid[0][0] == grid[1][0] == pytest.approx(3 / 8)
    assert grid[0][1] == pytest.approx(9 / 10)  # q9 is not informative
    assert math.isnan(grid[1][2])  # HOOK2 has no magnitude 8 cell


def test_fingerprint__names_model_data_config_judge_and_code(tmp_path):
    values = dict(fingerprint(load_run(_build(tmp_path))))
    assert "hand-model" in values["model"] and "1,000 params" in values["model"]
    assert "abababababab" in values["data"]
    assert values["judge"].startswith("hand:judge (prompt v1)")
    assert "0123456789" in values["code"]
    assert "4 cells · 40 answers" in values["contents"]
    summary = agreement_summary({"agreement": {"cv": {"truthful": {"model_written": {
        "accuracy": 0.8, "kappa": 0.5, "n": 100}}}}})
    assert "accuracy 0.80, κ 0.50 (n=100, model-written answers)" in summary
    assert "cross-validation" in summary
    assert "not measured" in agreement_summary({})


def test_load_run__judge_choice_and_usage_logs_are_not_judges(tmp_path):
    run_dir = _build(tmp_path)
    (run_dir / "scores" / "hand_judge.runs.jsonl").write_text('{"judge_id": "hand:judge"}\n')
    assert load_run(run_dir).judge_id == "hand:judge"
    hand_scores(run_dir, {("baseline", 0): ("yes", "yes")}, {("baseline", 0): "baseline answer 0"},
                judge_id="other:judge")
    with pytest.raises(InputError, match="several judges"):
        load_run(run_dir)
    assert load_run(run_dir, judge="other:judge").judge_id == "other:judge"
    with pytest.raises(InputError, match="no scores by that judge"):
        load_run(run_dir, judge="nobody")
