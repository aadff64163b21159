"""Score rows of a run: append, latest-per-key, what is missing, per-cell rates."""

from __future__ import annotations

import json
import math

from evals.judges.base import JudgeResult, Verdict
from evals.scores import (
    ScoreWriter,
    append_scores,
    load_scores,
    missing_keys,
    result_from_row,
    score_row,
    summarize,
    usage_totals,
)


def answer(cell: str, qid: int, text: str = "An answer.") -> dict:
    return {"cell_id": cell, "question_id": qid, "question": f"Q{qid}?", "answer": text}


def result(t: str, i: str, version: str = "v1", usage: dict | None = None) -> JudgeResult:
    def v(label: str) -> Verdict:
        if label == "unscored":
            return Verdict(label, None, "prompt", "raw", "HTTP 500 after 7 attempts")
        return Verdict(label, 0.9 if label == "yes" else 0.2, "prompt", "raw")

    return JudgeResult(v(t), v(i), "openai:m", version, usage or {})


def test_score_row__round_trips_the_result():
    res = result("yes", "unscored", usage={"requests": 3})
    row = score_row(answer("c", 4), res)
    assert row["cell_id"] == "c" and row["question_id"] == 4 and row["prompt_version"] == "v1"
    assert row["truthful"]["prompt"] == "prompt" and row["truthful"]["raw_reply"] == "raw"
    assert result_from_row(json.loads(json.dumps(row))) == res


def test_load_scores__latest_row_wins_and_versions_are_kept_apart(tmp_path):
    path = tmp_path / "scores" / "j.jsonl"
    append_scores(path, [score_row(answer("c", 0), result("no", "no")),
                         score_row(answer("c", 1), result("yes", "yes"))])
    append_scores(path, [score_row(answer("c", 0), result("yes", "no")),
                         score_row(answer("c", 1), result("no", "no", version="v2"))])
    v1 = load_scores(path, "v1")
    assert v1[("c", 0)]["truthful"]["verdict"] == "yes"
    assert v1[("c", 1)]["truthful"]["verdict"] == "yes"
    assert load_scores(path, "v2").keys() == {("c", 1)}
    assert load_scores(tmp_path / "none.jsonl") == {}


def test_score_writer__survives_a_torn_last_line(tmp_path):
    path = tmp_path / "s.jsonl"
    append_scores(path, [score_row(answer("c", 0), result("yes", "yes"))])
    with open(path, "a") as fh:
        fh.write('{"cell_id": "c", "question_id": 1, "trut')  # a crash mid-line
    assert set(load_scores(path)) == {("c", 0)}
    with ScoreWriter(path) as w:
        w.write(score_row(answer("c", 1), result("no", "yes")))
    assert set(load_scores(path)) == {("c", 0), ("c", 1)}


def test_missing_keys__no_score_changed_answer_or_unscored():
    answers = [answer("c", 0), answer("c", 1), answer("c", 2, "new text"), answer("c", 3)]
    scores = {
        ("c", 0): score_row(answer("c", 0), result("yes", "no")),
        ("c", 2): score_row(answer("c", 2, "old text"), result("yes", "yes")),
        ("c", 3): score_row(answer("c", 3), result("unscored", "yes")),
    }
    assert missing_keys(answers, scores) == [("c", 1), ("c", 2), ("c", 3)]


def test_summarize__rates_over_scored_answers_per_cell():
    answers = [answer("a", q) for q in range(4)] + [answer("b", 0)]
    scores = {
        ("a", 0): score_row(answer("a", 0), result("yes", "yes")),
        ("a", 1): score_row(answer("a", 1), result("yes", "no")),
        ("a", 2): score_row(answer("a", 2), result("no", "unscored")),
        # ("a", 3) not scored; ("b", 0) scored for a different answer text
        ("b", 0): score_row(answer("b", 0, "other"), result("yes", "yes")),
    }
    s = summarize(answers, scores)
    a = s["a"]
    assert (a["n"], a["n_truthful"], a["n_informative"]) == (4, 3, 2)
    assert a["pct_truthful"] == 200 / 3 and a["pct_informative"] == 50.0
    assert a["pct_truthful_informative"] == 50.0
    assert (a["unscored_truthful"], a["unscored_informative"]) == (1, 2)
    assert s["b"]["n"] == 1 and math.isnan(s["b"]["pct_truthful"])


def test_usage_totals__sums_counters():
    rows = [{"usage": {"requests": 2, "prompt_tokens": 10}}, {"usage": {"requests": 1}}, {}]
    assert usage_totals(rows) == {"requests": 3, "prompt_tokens": 10}
