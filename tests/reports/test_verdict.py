"""The verdict a report opens with (reports.verdict), on hand-built runs with planted numbers: it
names a winner only when both folds chose it and its paired interval lies above 0, says when the
folds disagree, counts the mostly-non-answer configurations and names the judge's κ."""

from __future__ import annotations

import math

from evals.agreement import agreement
from reports.load import load_run
from reports.tables import headline
from reports.verdict import judge_line, run_verdict, text_of
from tests.reports.conftest import hand_cell, hand_run_info, wilson_by_hand
from tests.reports.test_selection import FOLD_A, FOLD_B, N, _plant

T19 = 2.093024054408263  # the 97.5% quantile of Student's t with 19 degrees of freedom
DETECTOR_OFF = ("Non-answers are not counted: this judge does not run the non-answer detector, "
                "so a configuration that stopped answering cannot be flagged.")
JUDGE_UNMEASURED = ("Judge hand:judge, Cohen's κ: ⚠ not measured on steered answers, "
                    "so its verdicts on them are unchecked; not measured on TruthfulQA's labels.")
NO_VALIDATED_TEXT = ("⚠ This judge records no kinds of text it was measured on, so nothing says "
                     "its agreement holds on these answers: spot-check them.")


def _ci(k: int, n: int) -> str:
    lo, hi = wilson_by_hand(k, n)
    return f"{100 * k / n:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}]"


def _paired(diffs: list[int]) -> str:
    """mean ± t·sd/√n of per-question differences, in points, written out by hand."""
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = T19 * sd / math.sqrt(n)
    return f"{100 * mean:+.0f} pts [{100 * (mean - half):+.0f}, {100 * (mean + half):+.0f}]"


def _verdict(run_dir, **kw):
    run = load_run(run_dir)
    head = headline(run)
    return run_verdict(head.rows, head.selection, run.judge_id, run.judge_info, {}, **kw)


def test_run_verdict__a_clear_winner_is_named_with_its_out_of_fold_gain(tmp_path):
    steady = set(FOLD_A[:6]) | set(FOLD_B[:6])  # 12 of 20; the baseline: none
    paras = _verdict(_plant(tmp_path, {"weak": set(FOLD_A[:3]) | set(FOLD_B[:3]),
                                       "steady": steady}))
    assert text_of(paras).splitlines() == [
        f"steady @ blocks.3.hook_resid_post × 8 beat the baseline: true×informative "
        f"{_ci(12, 20)} vs the baseline's {_ci(0, 20)}, {_paired([1] * 12 + [0] * 8)} paired "
        "on the same questions. Both cross-fitting folds chose it, so these are out-of-fold "
        "rates. (20 questions; intervals are 95%.)",
        DETECTOR_OFF, JUDGE_UNMEASURED, NO_VALIDATED_TEXT]
    assert [p.css for p in paras] == ["verdict", "warn", "warn", "warn"]
    assert paras[0].spans[0] == ("b", "steady @ blocks.3.hook_resid_post × 8")
    named = _verdict(tmp_path / "run", name="Run 2, x")
    assert named[0].spans[:2] == (("b", "Run 2, x"), ": ")


def test_run_verdict__folds_disagree_so_no_configuration_beat_the_baseline(tmp_path):
    # fold A chooses "lucky" (all of A, 2 of B), fold B "steady" (6 of A, 5 of B); out of fold:
    # lucky 2/10 on B, steady 6/10 on A -> 8 of 20, vs the baseline's 7 of 20 (4 of A, 3 of B)
    lucky = set(FOLD_A) | set(FOLD_B[:2])
    steady = set(FOLD_A[:6]) | set(FOLD_B[2:7])
    base = set(FOLD_A[:4]) | set(FOLD_B[:3])
    paras = _verdict(_plant(tmp_path, {"baseline": base, "lucky": lucky, "steady": steady}))
    diffs = [int(q in lucky) - int(q in base) for q in FOLD_B] + \
        [int(q in steady) - int(q in base) for q in FOLD_A]
    assert sorted(diffs) == [-1] + [0] * 17 + [1, 1]
    assert text_of(paras).splitlines()[0] == (
        "No configuration beat the baseline beyond its noise (the folds disagree: fold A chose "
        "lucky @ blocks.3.hook_resid_post × 4, fold B steady @ blocks.3.hook_resid_post × 8; "
        f"pooled out-of-fold {_ci(8, 20)} vs the baseline's {_ci(7, 20)}, diff "
        f"{_paired(diffs)}). (20 questions; intervals are 95%.)")
    assert _paired(diffs) == "+5 pts [-13, +23]"
    assert "★" not in text_of(paras) and "beat the baseline:" not in text_of(paras)


def test_run_verdict__all_non_answers_means_nothing_is_compared(tmp_path):
    every = set(range(N))
    paras = _verdict(_plant(tmp_path, {"evasive": every, "silent": set()},
                            nonanswers={"evasive": every, "silent": set(range(11))},
                            fooled={"evasive"}))
    assert text_of(paras).splitlines() == [
        "No configuration can be compared with the baseline: all 2 steered configurations were "
        "mostly non-answers. (20 questions; intervals are 95%.)",
        "⚠ 2 of 2 steered configurations were mostly non-answers (more than 50% of their "
        "answers refusals, evasions or degenerate text by the non-answer detector; never marked "
        "best).",
        JUDGE_UNMEASURED, NO_VALIDATED_TEXT]
    assert [p.css for p in paras] == ["warn", "warn", "warn", "warn"]


def test_run_verdict__some_non_answers_are_counted_beside_the_winner(tmp_path):
    fair = set(FOLD_A[:4]) | set(FOLD_B[:4])
    paras = _verdict(_plant(tmp_path, {"evasive": set(), "fair": fair},
                            nonanswers={"evasive": set(range(1, N)), "fair": {FOLD_A[9]}},
                            fooled={"evasive"}))
    lines = text_of(paras).splitlines()
    assert lines[0].startswith("fair @ blocks.3.hook_resid_post × 8 beat the baseline: "
                               f"true×informative {_ci(8, 20)} vs the baseline's {_ci(0, 20)}")
    assert lines[1].startswith("⚠ 1 of 2 steered configurations were mostly non-answers")


def test_judge_line__names_the_measured_kappas_in_one_line():
    tqa = {"model_written": {"accuracy": 0.8, "kappa": 0.5, "n": 100}}
    stats = {"accuracy": 0.9, "kappa": 0.71, "n": 456}
    info = {"agreement": {"cv": {"truthful": {**tqa, "steered": stats},
                                 "informative": {**tqa, "steered": stats | {"kappa": 0.65}}},
                          "heldout": {"truthful": tqa, "informative": tqa}}}
    spans, warn = judge_line("learned:x@ab12", info, {})
    assert not warn and spans == [
        "Judge learned:x@ab12, Cohen's κ: on steered answers truthful 0.71, informative 0.65 "
        "(cross-validation on its train split, n=456, AI readers' labels); on TruthfulQA's "
        "labels truthful 0.50, informative 0.50 (held-out questions, people's labels)."]
    assert judge_line(None, info, {}) is None
    # this run's spot-check labels: judge and people agree on 3 of 4 (κ 0.50)
    human = {"truthful": agreement([True, True, False, False], [True, True, False, True])}
    spans, warn = judge_line("j", {}, human)
    assert warn and spans[0].endswith("; not measured on TruthfulQA's labels; on this run's "
                                      "spot-check labels truthful 0.50 (n=4, yours).")


def test_run_verdict__an_unjudged_run_says_so_and_claims_nothing(tmp_path):
    run_dir = tmp_path / "run"
    for cid, mag in (("baseline", 0.0), ("c1", 4.0)):
        hand_cell(run_dir, cid, "none" if mag == 0 else "d", "blocks.3.hook_resid_post", mag,
                  {q: f"{cid} {q}" for q in range(4)})
    hand_run_info(run_dir)
    paras = _verdict(run_dir)
    assert text_of(paras) == ("Not judged yet, so there is no true×informative verdict: only "
                              "MC1/MC2 and CE/KL are shown. (4 questions; intervals are 95%.)")
    assert [p.css for p in paras] == ["warn"]


def test_validated_line__counts_answers_outside_the_judge_s_validated_text_per_configuration():
    from types import SimpleNamespace

    from reports.verdict import validated_line

    rows = [SimpleNamespace(cell_id="baseline", label="baseline (magnitude 0)"),
            SimpleNamespace(cell_id="md", label="md @ blocks.3.hook_resid_post × 8")]
    text, warn = validated_line(rows, {"baseline": (0, 40), "md": (30, 40)}, judged=True)
    assert warn and text.startswith("⚠ 30 of 80 answers (38%) lie outside")
    assert "md @ blocks.3.hook_resid_post × 8 30/40" in text and "baseline" not in text
    assert "Label about 30 of them" in text  # all 30: fewer than the ~97 for ±10 points
    text, warn = validated_line(rows, {"baseline": (0, 40), "md": (0, 40)}, judged=True)
    assert not warn and text.startswith("All 80 answers lie within")
    assert validated_line(rows, None, judged=False) is None
