"""Judging a run: :func:`judge_run`, the one loop behind ``truthsteer judge``, the quickstart
and anything else that judges a run's answers. Scores are read and written through
:class:`evals.scores.ScoreFile`; the run through :class:`evals.rundir.RunDir`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from evals.errors import InputError
from evals.judges.base import JudgeResult
from evals.judges.domain import TOLERANCE, distance, outside_share
from evals.rundir import RunDir
from evals.scores import ScoreFile, missing, score_row, summarize, usage_totals

__all__ = ["cost_usd", "judge_run"]


def cost_usd(usage: Mapping[str, int], per_1k_in: float | None, per_1k_out: float | None
             ) -> float | None:
    """The cost of ``usage`` at the given prices per 1,000 tokens (None without prices)."""
    if per_1k_in is None and per_1k_out is None:
        return None
    return (usage.get("prompt_tokens", 0) * (per_1k_in or 0.0)
            + usage.get("completion_tokens", 0) * (per_1k_out or 0.0)) / 1000.0


def judge_run(run: RunDir | str | os.PathLike, judge: Any, *, truthfulqa: Any = None,
              progress: bool = True, prices: tuple[float | None, float | None] = (None, None),
              base_url: str | None = None, log: Any = None) -> dict[str, Any]:
    """Judge every answer of ``run`` that needs it (:func:`evals.scores.needs_judging`) with
    ``judge``, writing each score as it arrives, then the judge's usage record and its
    ``.judge.json``.

    ``truthfulqa``: the questions' references (a TruthfulQA, or a path; default: the run's own
    file, see :meth:`RunDir.load_truthfulqa`). ``prices``: USD per 1,000 input / output tokens
    for the cost in the usage record. ``base_url`` is recorded without credentials. ``log(msg)``
    is told what is about to be judged. Returns {"judge_id", "prompt_version", "path",
    "n_answers", "n_judged", "seconds", "usage", "cost_usd", "cells"
    (:func:`evals.scores.summarize`), "record" (path of the judge record or None)}.
    """
    from evals.judges import JudgeItem, judge_incrementally
    from evals.truthfulqa import TruthfulQA

    run = RunDir.open(run)
    answers = run.answers()
    if not answers:
        raise InputError(f"{run.path}: no finished cells with answers to judge")
    tq = truthfulqa if isinstance(truthfulqa, TruthfulQA) else run.load_truthfulqa(truthfulqa)
    by_id = {q.id: q for q in tq.by_id(sorted({int(r["question_id"]) for r in answers}))}
    for r in answers:
        q = by_id[int(r["question_id"])]
        if r.get("question") is not None and r["question"].strip() != q.question.strip():
            raise InputError(f"{run.path}: question {q.id} of cell {r['cell_id']} is "
                             f"{r['question'][:50]!r} but {tq.origin} has {q.question[:50]!r} "
                             "(pass the TruthfulQA file the run was generated from)")
    scores = ScoreFile.for_judge(run, judge.judge_id)
    todo = missing(answers, scores.latest(judge.prompt_version))
    if log is not None:
        log(f"{judge.judge_id} ({judge.prompt_version}): {len(answers)} answers in "
            f"{len({r['cell_id'] for r in answers})} cells; {len(answers) - len(todo)} already "
            f"scored, judging {len(todo)}")
    items = [JudgeItem.for_question(by_id[int(r["question_id"])], r["answer"]) for r in todo]
    usages: list[dict[str, int]] = []
    boxes = (judge.record() or {}).get("validated_on")
    started = time.time()
    with scores.writer() as writer:
        def on_result(i: int, result: JudgeResult) -> None:
            row = score_row(todo[i], result)
            if boxes:  # how far the answer lies from the text the judge was validated on
                d, nearest = distance(todo[i]["answer"], boxes)
                row["validated"] = {"distance": round(d, 3), "nearest": nearest,
                                    "outside": d > TOLERANCE}
            writer.write(row)
            usages.append(dict(result.usage))

        if items:
            judge_incrementally(judge, items, on_result, progress=progress)
    elapsed = time.time() - started
    usage = usage_totals(usages)
    cost = cost_usd(usage, *prices)
    scores.append_usage({
        "judge_id": judge.judge_id, "prompt_version": judge.prompt_version,
        "base_url": re.sub(r"//[^/@]*@", "//", base_url) if base_url else base_url,
        "judged": len(items), "seconds": round(elapsed, 2), "usage": usage, "cost_usd": cost,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    return {"judge_id": judge.judge_id, "prompt_version": judge.prompt_version,
            "path": scores.path, "n_answers": len(answers), "n_judged": len(items),
            "seconds": elapsed, "usage": usage, "cost_usd": cost,
            "cells": summarize(answers, scores.latest(judge.prompt_version)),
            "record": scores.write_record(judge),
            "outside": outside_by_cell(answers, boxes)}


def outside_by_cell(answers: list[dict[str, Any]], boxes: dict[str, Any] | None
                    ) -> dict[str, tuple[int, int]] | None:
    """{cell_id: (answers outside the text the judge was validated on, answers)}, or None when
    the judge records no validation sets (evals/judges/domain.py)."""
    if not boxes:
        return None
    cells: dict[str, list[str]] = {}
    for r in answers:
        cells.setdefault(str(r["cell_id"]), []).append(r["answer"])
    return {c: outside_share(a, boxes) for c, a in sorted(cells.items())}
