"""Cross-fitted best marks, the non-answer flag and the judge's agreement on steered text, on
hand-built run folders (RunDir's writer, hand-written score rows; no model)."""

from __future__ import annotations

import json
import re

import pytest

from evals.agreement import corrected_rate
from reports.build import write_report
from reports.fingerprint import agreement_summary, steered_agreement
from reports.load import load_run
from reports.selection import NONANSWER_FLAG, question_folds
from reports.spotcheck import report_focus
from reports.tables import BEST, BOTH, Rate, best_row, headline
from tests.reports.conftest import hand_cell, hand_run_info, hand_scores, wilson_by_hand

N = 20
FOLD_A, FOLD_B = (sorted(f) for f in question_folds(range(N)))
HOOK = "blocks.3.hook_resid_post"


def _plant(tmp_path, wins: dict[str, set[int]], nonanswers: dict[str, set[int]] | None = None,
           fooled: set[str] = frozenset()):
    """A run: the baseline and one cell per entry of ``wins`` (direction: the cell id up to
    its first "_"; magnitude 4, 8, ... in order), each true×informative on its set of
    questions and truthful but not informative elsewhere; cells in ``fooled`` are judged true
    and informative everywhere. ``nonanswers``: per cell, the questions the detector flags
    (others: not flagged)."""
    run = tmp_path / "run"
    answers, verdicts, flags = {}, {}, {}
    cells = {"baseline": ("none", 0.0, wins.get("baseline", set()))}
    for k, (name, qs) in enumerate((c, q) for c, q in wins.items() if c != "baseline"):
        cells[name] = (name, 4.0 * (k + 1), qs)
    for cid, (direction, mag, qs) in cells.items():
        texts = {q: f"{cid} says {q}" for q in range(N)}
        hand_cell(run, cid, direction.split("_")[0], HOOK, mag, texts)
        for q in range(N):
            answers[(cid, q)] = texts[q]
            good = q in qs or cid in fooled
            verdicts[(cid, q)] = ("yes", "yes" if good else "no")
            if nonanswers is not None:
                flags[(cid, q)] = q in nonanswers.get(cid, set())
    hand_scores(run, verdicts, answers, nonanswer=flags or None)
    hand_run_info(run)
    return run


def test_question_folds__balanced_deterministic_order_free_and_seeded():
    a, b = question_folds(range(N))
    assert len(a) == len(b) == N // 2 and not a & b and a | b == set(range(N))
    assert question_folds(reversed(range(N))) == (a, b)
    assert question_folds(range(N), seed=1) != (a, b)
    a5, b5 = question_folds(range(5))
    assert (len(a5), len(b5)) == (3, 2)


def test_cross_fit__a_configuration_that_wins_on_one_fold_only_is_not_crowned(tmp_path):
    # "lucky": every fold-A question and 2 of fold B (60% overall, the raw winner);
    # "steady": 6 of fold A and 5 of fold B (55%). Fold A chooses lucky, fold B steady.
    lucky = set(FOLD_A) | set(FOLD_B[:2])
    steady = set(FOLD_A[:6]) | set(FOLD_B[2:7])
    run = load_run(_plant(tmp_path, {"baseline": set(FOLD_A[:2]), "lucky": lucky,
                                     "steady": steady}))
    head = headline(run)
    rows = {r.cell_id: r for r in head.rows}
    assert best_row(head.rows).cell_id == "lucky"  # what an in-sample pick would crown
    assert not any(BEST in r.marks for r in head.rows)
    sel = head.selection
    assert sel.crowned is None
    a, b = sel.choices
    assert (a.cell_id, a.in_fold, a.out_of_fold) == ("lucky", Rate(10, 10), Rate(2, 10))
    assert (b.cell_id, b.in_fold, b.out_of_fold) == ("steady", Rate(5, 10), Rate(6, 10))
    assert sel.estimate == Rate(8, 20)  # the honest rate of "pick the best": out of fold only
    # paired with the baseline (true×informative on FOLD_A[:2]) on the same questions
    assert sel.delta[0] == pytest.approx((8 - 2) / 20)
    assert rows["lucky"].rates[BOTH] == Rate(12, 20)  # the in-sample rate is still shown

    out = tmp_path / "report"
    write_report([tmp_path / "run"], out)
    md = (out / "report.md").read_text()
    table = md.split("### Headline table", 1)[1].split("### Choosing", 1)[0]
    assert "★ best overall" not in table
    words = md.split("### Choosing the best configuration", 1)[1]
    assert "The folds disagree, so no configuration is marked best" in words
    lo, hi = wilson_by_hand(8, 20)  # the pooled out-of-fold estimate, 8 of 20
    assert f"is 40% \\[{100 * lo:.0f}–{100 * hi:.0f}\\]" in words
    assert "out-of-fold: 20% \\[" in words and "out-of-fold: 60% \\[" in words


def test_cross_fit__chosen_on_both_folds_is_crowned_with_out_of_fold_rates(tmp_path):
    steady = set(FOLD_A[:6]) | set(FOLD_B[:6])
    run = load_run(_plant(tmp_path, {"weak": set(FOLD_A[:3]) | set(FOLD_B[:3]),
                                     "steady": steady}))
    head = headline(run)
    best = next(r for r in head.rows if BEST in r.marks)
    assert best.cell_id == "steady" and best.marks[:2] == [BEST, "best of steady"]
    assert "clears baseline" in best.marks
    assert head.selection.crowned == "steady"
    assert head.selection.estimate == best.rates[BOTH] == Rate(12, 20)


def test_mark_best__a_configuration_of_non_answers_is_flagged_and_never_best(tmp_path):
    # the judge is fooled by "evasive" (true and informative on every answer) but the
    # detector flags 19 of its 20 answers; "fair" answers 8 questions well, 1 flagged
    fair = set(FOLD_A[:4]) | set(FOLD_B[:4])
    run_dir = _plant(tmp_path, {"evasive": set(), "fair": fair},
                     nonanswers={"evasive": set(range(1, N)), "fair": {FOLD_A[9]}},
                     fooled={"evasive"})
    head = headline(load_run(run_dir))
    rows = {r.cell_id: r for r in head.rows}
    evasive = rows["evasive"]
    assert evasive.rates[BOTH] == Rate(20, 20) and evasive.nonanswers == Rate(19, 20)
    assert evasive.mostly_nonanswers and NONANSWER_FLAG in evasive.marks
    assert not any("best" in m for m in evasive.marks)
    assert rows["fair"].marks[0] == BEST and rows["fair"].nonanswers == Rate(1, 20)
    assert head.selection.excluded == ("evasive",)
    assert report_focus(load_run(run_dir)) == ["baseline", "fair"]

    out = tmp_path / "report"
    write_report([run_dir], out)
    md = (out / "report.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| evasive |"))
    assert "**⚠ mostly non-answers**" in line and "★" not in line and "95% 19/20" in line
    assert "Not eligible" in md and "stopped answering" in md
    page = (out / "index.html").read_text()
    # a warning, not an award: amber "flag" style, never the green "mark" of a best row
    assert '<span class="flag">⚠ mostly non-answers</span>' in page
    assert '<span class="mark">⚠' not in page


def test_nonanswers__not_measured_reads_as_a_dash_not_as_zero(tmp_path):
    run_dir = _plant(tmp_path, {"fair": set(FOLD_A[:4]) | set(FOLD_B[:4])})
    head = headline(load_run(run_dir))
    assert all(r.nonanswers == Rate(0, 0) and not r.mostly_nonanswers for r in head.rows)
    write_report([run_dir], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "does not run the non-answer detector" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| fair |"))
    assert "| 20 | – |" in line


STATS = {"accuracy": 0.9, "kappa": 0.71, "n": 456}


def test_agreement__steered_text_when_measured_else_said_not_measured(tmp_path):
    tqa = {"model_written": {"accuracy": 0.8, "kappa": 0.5, "n": 100}}
    measured = {"agreement": {"cv": {"truthful": {**tqa, "steered": STATS},
                                     "informative": {**tqa, "steered": STATS | {"kappa": 0.65}}},
                              "heldout": {"truthful": tqa, "informative": tqa}}}
    where, found = steered_agreement(measured)
    assert where == "cross-validation on its train split" and found["informative"]["kappa"] == 0.65
    line = agreement_summary(measured)
    assert "TruthfulQA's human labels" in line and "held-out questions" in line
    assert "informative: accuracy 0.90, κ 0.65 (n=456)" in line.split("Steered:")[1]
    test_split = {"agreement": {"steered_test": {"truthful": {"all": STATS},
                                                 "informative": STATS}, **measured["agreement"]}}
    assert steered_agreement(test_split)[0] == "the held-out test split"
    bare = {"agreement": {"heldout": {"truthful": tqa, "informative": tqa}}}
    assert steered_agreement(bare) is None
    assert "NOT measured on steered text" in agreement_summary(bare)

    run_dir = _plant(tmp_path, {"fair": set(range(8))})
    write_report([run_dir], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "has not been measured on steered text" in md
    assert "--split test" in md and "NOT measured on steered text" in md


def test_spotcheck__oversamples_the_best_and_baseline_and_reports_their_corrected_rate(tmp_path):
    from evals.spotcheck import OVERSAMPLE, import_labels, sample_run

    steady = set(FOLD_A[:6]) | set(FOLD_B[:6])
    run_dir = _plant(tmp_path, {"d_weak": set(FOLD_A[:3]) | set(FOLD_B[:3]), "d_other": {0, 1},
                                "d_steady": steady})
    focus = report_focus(load_run(run_dir))
    assert focus == ["baseline", "d_steady"]
    paths, summary = sample_run(run_dir, n=16, seed=3, oversample=focus)
    design = json.loads(paths[2].read_text())
    per_cell = {}
    for it in design["items"]:
        per_cell[it["cell_id"]] = per_cell.get(it["cell_id"], 0) + 1
    # 16 draws, weights 3:3:1:1 -> 6, 6, 2, 2
    assert per_cell == {"baseline": 6, "d_steady": 6, "d_weak": 2, "d_other": 2}
    assert design["oversampled"] == {"cells": ["baseline", "d_steady"], "factor": OVERSAMPLE}
    assert summary["oversampled"] == ["baseline", "d_steady"]

    # synthetic labels: people disagree with the judge on 2 of the best row's sampled answers
    items = [it for it in design["items"] if it["cell_id"] == "d_steady"]
    human = {}
    for k, it in enumerate(items):
        judged = it["question_id"] in steady
        human[it["question_id"]] = (not judged) if k < 2 else judged
    labels = tmp_path / "labels.csv"
    labels.write_text("id,truthful,informative\n" + "".join(
        f"{it['id']},yes,{'yes' if human[it['question_id']] else 'no'}\n" for it in items))
    import_labels(run_dir, labels)
    judge_all = [q in steady for q in range(N)]
    judge_lab = [it["question_id"] in steady for it in items]
    expected = corrected_rate(judge_all, judge_lab, [human[it["question_id"]] for it in items],
                              [it["weight"] for it in items])
    row = next(r for r in headline(load_run(run_dir)).rows if r.cell_id == "d_steady")
    assert row.corrected[BOTH].corrected == pytest.approx(expected.corrected)
    write_report([run_dir], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    block = md.split("### Choosing the best configuration", 1)[1].split("###", 1)[0]
    line = next(ln for ln in block.splitlines() if "chosen on fold" in ln)
    pct = f"{100 * min(1.0, max(0.0, expected.corrected)):.0f}%"
    assert "chosen on fold A, chosen on fold B" in line and pct in line
    assert f"n={len(items)}" in line


def test_selection_block__direction_names_are_escaped_in_html_and_markdown(tmp_path):
    evil = '<img src=x onerror="alert(1)">|*x*'
    run = tmp_path / "run"
    answers, verdicts = {}, {}
    for cid, direction, mag in (("baseline", "none", 0.0), ("c1", evil, 4.0)):
        texts = {q: f"{cid} {q}" for q in range(N)}
        hand_cell(run, cid, direction, HOOK, mag, texts)
        for q in range(N):
            answers[(cid, q)] = texts[q]
            verdicts[(cid, q)] = ("yes", "yes" if cid == "c1" and q % 2 else "no")
    hand_scores(run, verdicts, answers, nonanswer={k: False for k in answers})
    hand_run_info(run)
    write_report([run], tmp_path / "report")
    html = (tmp_path / "report" / "index.html").read_text()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Fold A chose" in html and "<img src=x" not in html and "&lt;img src=x" in html
    words = md.split("### Choosing the best configuration", 1)[1].split("\n\n")[1]
    assert "<img" not in md and "&lt;img" in words and "\\|\\*x\\*" in words
    names = [p.name for p in (tmp_path / "report" / "figures").iterdir()]
    assert names and all(re.fullmatch(r"[A-Za-z0-9_.-]+\.png", n) for n in names)
