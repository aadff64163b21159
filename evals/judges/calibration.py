"""Measuring a judge against labelled answers (``truthsteer calibrate``): TruthfulQA's human label
files or the steered development set's (same lines plus ``config`` / ``split``), any judge.

:func:`calibrate` judges every distinct (question, answer) once and returns one row per label
line plus the agreement: per kind on all / model-written / reference rows, per configuration
when the labels have configurations, and true x informative (an answer is positive when it is
both; only answers with both labels) when both kinds are given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.agreement import agreement
from evals.judges.base import KINDS, Judge, JudgeItem
from evals.judges.steered import read_split
from evals.labels import LabelRow, is_reference_answer, match_questions

TRUE_X_INFO = "true_x_informative"


@dataclass
class Calibration:
    """The label rows scored (``rows``, one per label line, in input order) and the agreement:
    ``report`` {kind: {subset: stats}} (kinds include true_x_informative when both are given),
    ``by_config`` {config: {kind: stats}}."""

    rows: list[dict[str, Any]]
    report: dict[str, dict[str, dict]]
    by_config: dict[str, dict[str, dict]] = field(default_factory=dict)
    n_labels: int = 0
    n_matched: int = 0
    n_questions: int = 0
    overlap_questions: int = 0


def read_label_files(paths: Sequence[str | os.PathLike], split: str = "all",
                     limit: int | None = None) -> tuple[list[LabelRow], list[Any]]:
    """Rows and their extra fields from one or more label files (``split`` applied to each)."""
    rows, meta = [], []
    for path in paths:
        r, m = read_split(path, split, limit)
        rows += r
        meta += m
    return rows, meta


def _agreement(vals: list[tuple]) -> dict:
    return agreement([v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals]).to_dict()


def calibrate(judge: Judge, rows: Sequence[LabelRow], meta: Sequence[Any], tq: Any,
              progress: bool = True) -> Calibration:
    """Judge the labelled answers and measure agreement (see the module docstring)."""
    from evals.labels import question_key

    questions = match_questions(rows, tq)
    unique: dict[tuple[str, str], int] = {}
    items = []
    for r, q in zip(rows, questions):
        if (r.question, r.answer) not in unique:
            unique[(r.question, r.answer)] = len(items)
            items.append(JudgeItem.for_question(q, r.answer, text=r.question))
    kinds = sorted({r.kind for r in rows}, key=KINDS.index)
    extra = {"kinds": kinds} if judge.selects_kinds else {}
    results = judge.judge(items, progress=progress, **extra)
    out_rows, by_kind, by_config = [], {}, {}
    both: dict[int, dict[str, tuple]] = {}
    for r, q, m in zip(rows, questions, meta):
        res = results[unique[(r.question, r.answer)]]
        v = getattr(res, r.kind)
        is_ref = is_reference_answer(r.answer, q)
        row = {"line": r.line, "kind": r.kind, "question": r.question, "answer": r.answer,
               "human": "yes" if r.label else "no",
               "verdict": v.verdict if v.scored else None, "p_yes": v.p_yes, "error": v.error,
               "matched": q is not None, "reference_row": is_ref, "judge_id": judge.judge_id}
        if m.config is not None:
            row.update(config=m.config, split=m.split)
        if res.nonanswer is not None:
            row["nonanswer"] = res.nonanswer.to_dict()
        out_rows.append(row)
        val = (v.label, r.label, v.p_yes, is_ref, m.config)
        by_kind.setdefault(r.kind, []).append(val)
        both.setdefault(unique[(r.question, r.answer)], {})[r.kind] = val
    pairs = [(d["truthful"], d["informative"]) for d in both.values() if len(d) == 2]
    if pairs:
        by_kind[TRUE_X_INFO] = [
            (None if t[0] is None or i[0] is None else t[0] and i[0], t[1] and i[1],
             None if t[2] is None or i[2] is None else t[2] * i[2], t[3], t[4])
            for t, i in pairs]
    report: dict[str, dict[str, dict]] = {}
    for kind, vals in by_kind.items():
        report[kind] = {}
        for subset, keep in (("all", lambda x: True), ("model_written", lambda x: not x[3]),
                             ("reference", lambda x: x[3])):
            sel = [x for x in vals if keep(x)]
            if sel:
                report[kind][subset] = _agreement(sel)
        for x in vals:
            if x[4] is not None:
                by_config.setdefault(x[4], {}).setdefault(kind, []).append(x)
    configs = {c: {k: _agreement(v) for k, v in d.items()} for c, d in sorted(by_config.items())}
    trained_on = judge.training_questions
    distinct = {r.question for r in rows}
    return Calibration(out_rows, report, configs, len(rows), sum(q is not None for q in questions),
                       len({r.question for r, q in zip(rows, questions) if q}),
                       sum(question_key(x) in trained_on for x in distinct))
